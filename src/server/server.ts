import { tmpdir } from "node:os";
import { join } from "node:path";
import { MmpError } from "../protocol/errors.ts";
import type { ClientJob } from "../jobs/client_job.ts";
import { JobCore, type JobSubmission } from "../jobs/core.ts";
import { type IpSlots, LocalIpSlots } from "../jobs/ip_slots.ts";
import { DEFAULT_LIMITS, type MediaLimits } from "../jobs/process.ts";
import { JobQueue } from "../jobs/queue.ts";
import { RedisIpSlots } from "../jobs/redis_slots.ts";
import { Storage } from "../jobs/storage.ts";
import { findTools } from "../media/ffmpeg.ts";
import { type HttpServer, startHttp } from "../http/server.ts";
import { type Agent, agentLine, startAgent } from "../cluster/agent.ts";
import { acceptProxied, type AcceptProxiedOptions, ProxyRefusal } from "../cluster/proxied_conn.ts";
import { handleConnection, type ServerContext } from "./connection.ts";

/** The HTTP API and web page of {@linkcode ServeOptions.http}. */
export interface HttpServeOptions {
  /** Port; 0 picks a free one. Default 8080. */
  port?: number;
  /** Address to listen on. Default: the MMP `hostname`. */
  hostname?: string;
  /**
   * Host names the server answers to (DNS-rebinding guard); `*` accepts any. Default: the bind
   * address, localhost, and any IP address (127.0.0.1, ::1, the machine's own addresses).
   */
  allowedHosts?: string[];
}

/** Options of {@linkcode serve}; every field has a default. */
export interface ServeOptions {
  /** Address to listen on. Default `0.0.0.0`. */
  hostname?: string;
  /** Port; 0 picks a free one. Default 9000. */
  port?: number;
  /** The HTTP API and web page; off when absent or `false` (`mmp serve` turns it on). */
  http?: HttpServeOptions | false;
  /** Seconds an HTTP result waits for its download before it is deleted. Default 600. */
  resultTtlSeconds?: number;
  /** Seconds a resumable upload, job or result outlives its connection (0: off). Default 900. */
  resumeWindowSeconds?: number;
  /** Directory for temporary files. Default `<tmp>/mmp`. */
  storageDir?: string;
  /** Quota over all uploads and outputs in flight, in bytes. Default 4 TB. */
  maxStorage?: number;
  /** The CPU budget: threads the running jobs' ffmpegs may use together. Default: every core. */
  cpus?: number;
  /** Most jobs at once, whatever their threads. Default: `cpus`. */
  jobs?: number;
  /**
   * Load balancers whose connections to the MMP port start with a PROXY protocol header (v1 or
   * v2); its client address is the client's IP for every rule. A header from any other address is
   * refused. Off when absent.
   */
  proxyProtocol?: string[];
  /** The one-job-per-IP rule as Redis leases shared by every node; in-process when absent. */
  redis?: RedisServeOptions;
  /** Port of the HAProxy agent-check responder (on `hostname`); off when absent. */
  agentPort?: number;
  /** Seconds a client may stall before its upload is accepted. Default 60. */
  idleTimeoutSeconds?: number;
  /** Uploads slower than this many bytes per second are cut off. Default 1024. */
  minUploadBytesPerSecond?: number;
  /** Open connections allowed at once; more get `BUSY` at once. Default 1024. */
  maxConnections?: number;
  /** Decode-bomb limits: frame size, media duration, processing time. */
  limits?: Partial<MediaLimits>;
  /** The ffmpeg executable (ffprobe is looked up beside it). Default env `MMP_FFMPEG`, then PATH. */
  ffmpeg?: string;
  /**
   * An ffmpeg with libvmaf that only scores: compress then searches on VMAF. Default: the main
   * ffmpeg when it has libvmaf, else none (the search uses SSIM).
   */
  vmafFfmpeg?: string;
  /** Compress's time budget, a fixed multiple of ffmpeg's default encode time (see `Tools`). */
  compressBudget?: number;
  /** Where log lines go. Default stderr. */
  log?: (line: string) => void;
}

/** Options of {@linkcode ServeOptions.redis}. */
export interface RedisServeOptions {
  /** `redis://host:port`. */
  url: string;
  /** This node's name in the leases it holds (for operators). Default: `node-` and random hex. */
  nodeId?: string;
  /** A dead node's leases lapse after this long. Default 15000. */
  ttlMs?: number;
  /** Live leases are renewed this often. Default a third of `ttlMs`. */
  renewMs?: number;
}

/** A running server. */
export interface MmpServer extends AsyncDisposable {
  /** The address MMP listens on, with the real port when 0 was asked for. */
  readonly addr: Deno.NetAddr;
  /** The address of the HTTP API and page, when it is on. */
  readonly httpAddr: Deno.NetAddr | undefined;
  /** The address of the agent-check responder, when it is on. */
  readonly agentAddr: Deno.NetAddr | undefined;
  readonly core: JobCore;
  readonly storage: Storage;
  readonly queue: JobQueue;
  /** Settles when the server has stopped and cleaned up. */
  readonly finished: Promise<void>;
  /** Stops accepting, cancels every job, deletes every job file, closes every connection. */
  shutdown(): Promise<void>;
  /**
   * Graceful stop: the agent reports `drain`, new jobs get `SHUTTING_DOWN`, running and queued jobs
   * and connected MMP clients finish for up to `timeoutMs`; then {@linkcode shutdown}.
   */
  drain(timeoutMs: number): Promise<void>;
  /** What the agent check answers now. */
  agentReport(): string;
}

/** The default for `--cpus`: every core. */
export function defaultCpus(): number {
  return Math.max(1, navigator.hardwareConcurrency);
}

/**
 * The job core of one node: jobs are refused with `SHUTTING_DOWN` while it drains, and each
 * admitted job tells the queue how many threads its plan uses.
 */
class NodeCore extends JobCore {
  draining = false;

  override async admit(submission: JobSubmission): Promise<ClientJob> {
    if (this.draining) {
      throw new MmpError(
        "SHUTTING_DOWN",
        "This server is draining: it finishes its jobs and stops",
        {
          solution: "Send the job again: another server of the service takes it",
        },
      );
    }
    const job = await super.admit(submission);
    const cpus = this.queue.cpus;
    this.queue.declareThreads(job.id, job.request.plan.threads?.(cpus) ?? cpus);
    job.done.catch(() => {}).finally(() => this.queue.forget(job.id));
    return job;
  }
}

/** The default for `--storage`. */
export function defaultStorageDir(): string {
  return join(tmpdir(), "mmp");
}

/**
 * Starts an MMP server, and the HTTP API beside it when `http` is given.
 *
 * @example
 * ```ts
 * await using server = await serve({ port: 0, http: { port: 0 } });
 * console.log(`listening on ${server.addr.port}, web on ${server.httpAddr?.port}`);
 * ```
 */
export async function serve(options: ServeOptions = {}): Promise<MmpServer> {
  const tools = await findTools(options.ffmpeg, options.vmafFfmpeg);
  if (options.compressBudget !== undefined) tools.compressBudget = options.compressBudget;
  const storage = await Storage.open({
    dir: options.storageDir ?? defaultStorageDir(),
    maxBytes: options.maxStorage ?? 4e12,
  });
  const cpus = options.cpus ?? defaultCpus();
  const queue = new JobQueue({ cpus, jobs: options.jobs ?? cpus });
  const log = options.log ?? ((line: string) => console.error(`mmp: ${line}`));
  const hostname = options.hostname ?? "0.0.0.0";
  const port = options.port ?? 9000;
  const redis = options.redis;
  const slots: IpSlots & Partial<AsyncDisposable> = redis
    ? await RedisIpSlots.connect({
      url: redis.url,
      nodeId: redis.nodeId ?? `node-${crypto.randomUUID().slice(0, 8)}`,
      ...(redis.ttlMs === undefined ? {} : { ttlMs: redis.ttlMs }),
      ...(redis.renewMs === undefined ? {} : { renewMs: redis.renewMs }),
      log,
    })
    : new LocalIpSlots();
  const core = new NodeCore({
    storage,
    queue,
    tools,
    slots,
    limits: { ...DEFAULT_LIMITS, ...options.limits },
    resumeWindowSeconds: options.resumeWindowSeconds ?? 900,
  });
  const controller = new AbortController();
  const sessions = new Set<Promise<void>>();
  const ctx: ServerContext = {
    core,
    idleTimeoutMs: (options.idleTimeoutSeconds ?? 60) * 1000,
    minUploadBytesPerSecond: options.minUploadBytesPerSecond ?? 1024,
    connections: () => sessions.size,
    maxConnections: options.maxConnections ?? 1024,
    signal: controller.signal,
    log,
  };
  const listener = Deno.listen({ hostname, port });
  let http: HttpServer | undefined;
  let agent: Agent | undefined;
  let stopping: Promise<void> | undefined;
  const agentReport = () =>
    agentLine({
      stopping: core.draining || stopping !== undefined,
      cpus,
      usedThreads: queue.usedThreads,
      waitingThreads: queue.waitingThreads,
      reservedBytes: storage.reserved,
      maxBytes: storage.maxBytes,
    });
  if (options.http) {
    try {
      http = await startHttp({
        core,
        hostname: options.http.hostname ?? hostname,
        port: options.http.port ?? 8080,
        ...(options.http.allowedHosts ? { allowedHosts: options.http.allowedHosts } : {}),
        resultTtlSeconds: options.resultTtlSeconds ?? 600,
        idleTimeoutMs: ctx.idleTimeoutMs,
        minUploadBytesPerSecond: ctx.minUploadBytesPerSecond,
        signal: controller.signal,
        log,
      });
    } catch (err) {
      listener.close();
      await slots[Symbol.asyncDispose]?.();
      throw err;
    }
  }
  if (options.agentPort !== undefined) {
    agent = startAgent({ hostname, port: options.agentPort, report: agentReport });
  }
  const proxy: AcceptProxiedOptions | undefined = options.proxyProtocol
    ? { trusted: new Set(options.proxyProtocol), firstBytesTimeoutMs: ctx.idleTimeoutMs }
    : undefined;
  const accepting = acceptLoop(listener, ctx, sessions, proxy);

  const shutdown = () =>
    stopping ??= (async () => {
      listener.close();
      controller.abort(
        new MmpError("SHUTTING_DOWN", "The server is shutting down and stopped your job"),
      );
      await Promise.all([accepting, queue.close(controller.signal.reason)]);
      await Promise.all([...sessions, http?.close(), agent?.close()]);
      await core.close(controller.signal.reason);
      await slots[Symbol.asyncDispose]?.();
      await storage.removeLeftovers();
    })();

  const drain = async (timeoutMs: number) => {
    core.draining = true;
    await core.dropPartialUploads(new MmpError("SHUTTING_DOWN", "The server is stopping"));
    const deadline = performance.now() + timeoutMs;
    // Running and queued jobs, and MMP clients still connected (uploading, waiting, receiving).
    // An upload held for a client that went away (resumable) is not waited for.
    const busy = () => queue.size.running + queue.size.waiting + sessions.size > 0;
    while (busy() && performance.now() < deadline && !stopping) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await shutdown();
  };

  return {
    addr: listener.addr,
    httpAddr: http?.addr,
    agentAddr: agent?.addr,
    core,
    storage,
    queue,
    get finished() {
      return accepting.then(() => stopping);
    },
    shutdown,
    drain,
    agentReport,
    [Symbol.asyncDispose]: shutdown,
  };
}

/** Errors of a client that left before `accept()` returned it: no reason to stop or to worry. */
function isBenignAcceptError(err: unknown): boolean {
  return err instanceof Deno.errors.NotConnected || err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.ConnectionAborted;
}

/** Accepts until the listener closes; survives every `accept()` error (logged at most once a minute). */
async function acceptLoop(
  listener: Deno.TcpListener,
  ctx: ServerContext,
  sessions: Set<Promise<void>>,
  proxy: AcceptProxiedOptions | undefined,
): Promise<void> {
  let loggedAt = -Infinity;
  let failures = 0;
  while (true) {
    let conn: Deno.TcpConn;
    try {
      conn = await listener.accept();
    } catch (err) {
      if (ctx.signal.aborted || err instanceof Deno.errors.BadResource) return;
      if (err instanceof Deno.errors.Interrupted) return;
      failures++;
      if (performance.now() - loggedAt > 60_000) {
        ctx.log(`accept failed (${failures} since the last report), continuing: ${err}`);
        loggedAt = performance.now();
        failures = 0;
      }
      // Out of file descriptors and the like: give the sessions a moment to free some.
      if (!isBenignAcceptError(err)) await new Promise((resolve) => setTimeout(resolve, 50));
      continue;
    }
    const session = serveConnection(conn, ctx, proxy);
    sessions.add(session);
    session.finally(() => sessions.delete(session));
  }
}

/** One connection: the PROXY header first where `--proxy-protocol` asks for it, then MMP. */
async function serveConnection(
  conn: Deno.TcpConn,
  ctx: ServerContext,
  proxy: AcceptProxiedOptions | undefined,
): Promise<void> {
  try {
    conn.setNoDelay(true);
  } catch { /* the client left already; the session finds out */ }
  if (!proxy) return await handleConnection(conn, ctx);
  const close = () => {
    try {
      conn.close();
    } catch { /* closed already */ }
  };
  ctx.signal.addEventListener("abort", close, { once: true });
  let proxied;
  try {
    proxied = await acceptProxied(conn, proxy);
  } catch (err) {
    if (!(err instanceof ProxyRefusal) || !err.quiet) {
      ctx.log(`connection closed unread: ${(err as Error).message}`);
    }
    return close();
  } finally {
    ctx.signal.removeEventListener("abort", close);
  }
  await handleConnection(proxied, ctx);
}
