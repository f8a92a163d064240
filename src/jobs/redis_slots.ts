/**
 * The one-job-per-IP rule across a cluster: each IP's slot is a lease in Redis, so a second job
 * from the same address gets `BUSY` on whichever node it lands.
 *
 * @module
 */
import { createClient } from "npm:redis@5.8.2";
import { MmpError } from "../protocol/errors.ts";
import { busyError, type IpLease, type IpSlots } from "./ip_slots.ts";

/** Renews a lease only while this node still owns it. */
const RENEW = `if redis.call("get", KEYS[1]) == ARGV[1] then
  return redis.call("pexpire", KEYS[1], ARGV[2])
end
return 0`;

/** Deletes a lease only while this node still owns it. */
const RELEASE = `if redis.call("get", KEYS[1]) == ARGV[1] then
  return redis.call("del", KEYS[1])
end
return 0`;

/** Options of {@linkcode RedisIpSlots.connect}. */
export interface RedisIpSlotsOptions {
  /** `redis://[user:password@]host:port[/db]`. */
  url: string;
  /** This node's name, written into each lease it owns (`NODE:random`). */
  nodeId: string;
  /** A lease lives this long unless renewed: how long a dead node's IPs stay busy. Default 15000. */
  ttlMs?: number;
  /** A live job's lease is renewed this often. Default a third of `ttlMs`. */
  renewMs?: number;
  /** Key prefix. Default `mmp:ip:`. */
  prefix?: string;
  /** A Redis call that takes longer than this counts as Redis being unreachable. Default 2000. */
  commandTimeoutMs?: number;
  /** Where connection changes and renewal failures are reported. */
  log?: (line: string) => void;
}

type Client = ReturnType<typeof createClient>;

/** How often the connection is checked, and how long it may be down before it is replaced. */
const WATCHDOG_MS = 500;
const STUCK_MS = 3000;

/** The error for a job that cannot be admitted because Redis is out of reach. */
export function unavailableError(cause?: unknown): MmpError {
  return new MmpError("UNAVAILABLE", "The cluster's job registry (Redis) is unreachable", {
    solution: "Send the job again in a minute; jobs already running are not affected",
    cause,
  });
}

/**
 * IP slots held as Redis leases: `SET key owner NX PX ttl` to claim, a compare-and-set `PEXPIRE`
 * to renew while the job lives, a compare-and-delete to release. Fails closed: without Redis, new
 * jobs get `UNAVAILABLE`; running jobs go on, and the node recovers when Redis is back.
 *
 * @example
 * ```ts
 * await using slots = await RedisIpSlots.connect({ url: "redis://127.0.0.1:6379", nodeId: "n1" });
 * const lease = await slots.claim("192.0.2.7"); // BUSY on every node until released
 * await lease.release();
 * ```
 */
export class RedisIpSlots implements IpSlots, AsyncDisposable {
  readonly ttlMs: number;
  #client: Client;
  readonly #url: string;
  /** Since when the client has not been ready, for the watchdog. */
  #downSince: number | undefined;
  #watchdog: ReturnType<typeof setInterval> | undefined;
  /** A command went unanswered: the connection may be dead though the client says ready. */
  #timedOut = false;
  readonly #nodeId: string;
  readonly #renewMs: number;
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #log: (line: string) => void;
  readonly #held = new Map<
    string,
    { key: string; owner: string; timer: ReturnType<typeof setInterval> }
  >();
  #closed = false;

  private constructor(options: RedisIpSlotsOptions) {
    this.#url = options.url;
    this.#nodeId = options.nodeId;
    this.ttlMs = options.ttlMs ?? 15_000;
    this.#renewMs = options.renewMs ?? Math.max(100, Math.floor(this.ttlMs / 3));
    this.#prefix = options.prefix ?? "mmp:ip:";
    this.#timeoutMs = options.commandTimeoutMs ?? 2000;
    this.#log = options.log ?? (() => {});
    this.#client = this.#open();
  }

  /**
   * Creates the slots and starts connecting. Resolves at once, even while Redis is down: the node
   * serves `info` and refuses jobs with `UNAVAILABLE` until Redis answers, then reconnects by itself.
   */
  static connect(options: RedisIpSlotsOptions): Promise<RedisIpSlots> {
    const slots = new RedisIpSlots(options);
    slots.#watchdog = setInterval(() => slots.#watch(), WATCHDOG_MS);
    return Promise.resolve(slots);
  }

  /** A new client, connecting in the background and reconnecting by its own strategy. */
  #open(): Client {
    const client = createClient({
      url: this.#url,
      // Without Redis, a command fails at once instead of waiting in a queue.
      disableOfflineQueue: true,
      socket: {
        connectTimeout: this.#timeoutMs,
        reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, 1000),
      },
    });
    client.on("error", (err: Error) => {
      if (this.#downSince === undefined) {
        this.#log(`redis unreachable: ${err.message}; new jobs get UNAVAILABLE`);
      }
      this.#downSince ??= performance.now();
    });
    client.on("ready", () => {
      if (this.#downSince !== undefined) this.#log("redis reachable again; accepting jobs");
      this.#downSince = undefined;
    });
    client.connect().catch(() => {/* reported by the error event; retried by the strategy */});
    return client;
  }

  /**
   * Measured here: after a Redis restart, a node-redis client under Deno sometimes never becomes
   * ready again (its reconnect attempt hangs), or says it is ready while its commands go
   * unanswered. A client not ready, or whose command timed out, for longer than {@linkcode
   * STUCK_MS} is replaced by a fresh one, so the node always recovers by itself.
   */
  #watch(): void {
    if (this.#closed) return;
    if (this.#client.isReady && !this.#timedOut) {
      this.#downSince = undefined;
      return;
    }
    const since = this.#downSince ??= performance.now();
    if (performance.now() - since < STUCK_MS) return;
    this.#replaceClient();
  }

  /** Swaps in a fresh client; the stuck one is destroyed. */
  #replaceClient(): void {
    const stuck = this.#client;
    this.#timedOut = false;
    this.#client = this.#open();
    this.#downSince = performance.now();
    try {
      stuck.destroy();
    } catch { /* already closed */ }
  }

  /** Whether Redis answers now. */
  get ready(): boolean {
    return this.#client.isReady;
  }

  /** How many leases this node holds. */
  get size(): number {
    return this.#held.size;
  }

  async claim(ip: string): Promise<IpLease> {
    if (this.#closed || !this.#client.isReady) throw unavailableError();
    const key = this.#prefix + ip;
    const owner = `${this.#nodeId}:${crypto.randomUUID()}`;
    const taken = await this.#call(() =>
      this.#client.set(key, owner, { NX: true, PX: this.ttlMs })
    );
    if (taken !== "OK") {
      const ttl = await this.#call(() => this.#client.pTTL(key)).catch(() => -1);
      throw new MmpError("BUSY", "A job from your address is already in progress in this service", {
        solution: ttl > 0
          ? "Wait for your running job to finish, or cancel it. Its hold is renewed while it runs " +
            `and lapses ${Math.ceil(ttl / 1000)} s after it stops: try again then`
          : busyError().solution,
      });
    }
    const id = crypto.randomUUID();
    const timer = setInterval(() => this.#renew(ip, key, owner), this.#renewMs);
    this.#held.set(id, { key, owner, timer });
    let held = true;
    return {
      ip,
      release: async () => {
        if (!held) return;
        held = false;
        clearInterval(timer);
        this.#held.delete(id);
        // Without Redis, the lease lapses by itself within the TTL.
        await this.#call(() => this.#client.eval(RELEASE, { keys: [key], arguments: [owner] }))
          .catch(() => {});
      },
    };
  }

  async #renew(ip: string, key: string, owner: string): Promise<void> {
    try {
      const renewed = await this.#call(() =>
        this.#client.eval(RENEW, { keys: [key], arguments: [owner, String(this.ttlMs)] })
      );
      if (renewed !== 1) this.#log(`lease of ${ip} was lost (Redis restarted or lagged)`);
    } catch { /* Redis is down: logged once by the error event; the job goes on */ }
  }

  /** Runs a Redis command; a failure or a slow answer becomes `UNAVAILABLE`. */
  async #call<T>(command: () => Promise<T>): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const slow = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.#timedOut = true;
        reject(unavailableError());
      }, this.#timeoutMs);
    });
    const pending = command();
    pending.catch(() => {});
    try {
      return await Promise.race([pending, slow]);
    } catch (err) {
      throw err instanceof MmpError ? err : unavailableError(err);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops renewing (leases lapse within the TTL) and closes the connection. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#closed = true;
    clearInterval(this.#watchdog);
    for (const { timer } of this.#held.values()) clearInterval(timer);
    this.#held.clear();
    this.#client.destroy();
    await Promise.resolve();
  }
}
