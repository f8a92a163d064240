/**
 * A fault-injecting TCP proxy for tests: it forwards each connection to a server, throttled, and
 * cuts it where a plan says: after so many bytes in either direction, or when a condition holds.
 * It connects to the server from the client's own address, so the server sees the client's IP.
 */
import { createServer, type Server, Socket } from "node:net";

/** Where to cut one connection. */
export interface CutRule {
  /** Cut once this many client-to-server bytes have passed (the rest never arrives). */
  up?: number;
  /** Cut once this many server-to-client bytes have passed. */
  down?: number;
  /** Cut as soon as this holds (checked every 5 ms). */
  when?: () => boolean;
}

/** Options of {@linkcode FaultProxy.start}. */
export interface FaultProxyOptions {
  /** The server's port on 127.0.0.1. */
  target: number;
  /** Bytes per second in each direction of each connection; 0 for no limit. Default 0. */
  rate?: number;
  /** The cut for the n-th connection (from 0), if any. */
  plan?: (index: number) => CutRule | undefined;
}

/** A running proxy; `cuts` counts the connections it cut, `upBytes` what clients sent through it. */
export class FaultProxy implements AsyncDisposable {
  readonly port: number;
  connections = 0;
  cuts = 0;
  upBytes = 0;
  downBytes = 0;
  readonly #server: Server;
  readonly #options: FaultProxyOptions;
  readonly #open = new Set<Promise<void>>();
  readonly #cutters = new Set<() => void>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();

  private constructor(server: Server, port: number, options: FaultProxyOptions) {
    this.#server = server;
    this.port = port;
    this.#options = options;
  }

  static start(options: FaultProxyOptions): Promise<FaultProxy> {
    return new Promise((resolve, reject) => {
      let proxy: FaultProxy | undefined;
      const server = createServer({ allowHalfOpen: true }, (socket) => proxy!.#accept(socket));
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        const address = server.address();
        const port = typeof address === "object" && address ? address.port : 0;
        proxy = new FaultProxy(server, port, options);
        resolve(proxy);
      });
    });
  }

  #accept(client: Socket): void {
    const rule = this.#options.plan?.(this.connections);
    this.connections++;
    const ended = Promise.withResolvers<void>();
    this.#open.add(ended.promise);
    ended.promise.finally(() => this.#open.delete(ended.promise));
    const host = (client.remoteAddress ?? "127.0.0.1").replace(/^::ffff:/, "");
    const server = new Socket({ allowHalfOpen: true });
    let closed = 0;
    let cut = false;
    const destroy = () => {
      client.destroy();
      server.destroy();
    };
    const onClose = () => {
      if (++closed === 2) {
        clearInterval(watch);
        this.#cutters.delete(destroy);
        ended.resolve();
      }
    };
    const cutNow = () => {
      if (cut) return;
      cut = true;
      this.cuts++;
      destroy();
    };
    this.#cutters.add(destroy);
    const watch = setInterval(() => {
      if (rule?.when?.()) cutNow();
    }, 5);
    client.on("close", onClose);
    server.on("close", onClose);
    client.on("error", () => server.destroy());
    server.on("error", () => client.destroy());
    server.connect({ host: "127.0.0.1", port: this.#options.target, localAddress: host });
    client.pause();
    server.once("connect", () => client.resume());
    this.#pipe(client, server, rule?.up, (n) => this.upBytes += n, cutNow);
    this.#pipe(server, client, rule?.down, (n) => this.downBytes += n, cutNow);
  }

  /** Forwards `from` to `to`, throttled, cutting after `limit` bytes. */
  #pipe(
    from: Socket,
    to: Socket,
    limit: number | undefined,
    count: (n: number) => void,
    cutNow: () => void,
  ): void {
    const rate = this.#options.rate ?? 0;
    let passed = 0;
    /** Chunks are written in order, each after its throttle delay; `end` waits for them. */
    let queue = Promise.resolve();
    const later = (ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.#timers.delete(timer);
          resolve();
        }, ms);
        this.#timers.add(timer);
      });
    from.on("data", (data: Uint8Array) => {
      let chunk = data;
      let last = false;
      if (limit !== undefined && passed + chunk.length >= limit) {
        chunk = chunk.subarray(0, Math.max(0, limit - passed));
        last = true;
      }
      passed += chunk.length;
      count(chunk.length);
      from.pause();
      queue = queue.then(async () => {
        if (rate > 0) await later((chunk.length / rate) * 1000);
        if (to.destroyed) return;
        await new Promise<void>((resolve) => to.write(chunk, () => resolve()));
        if (last) cutNow();
        else if (!from.destroyed) from.resume();
      });
    });
    from.on("end", () => {
      queue = queue.then(() => {
        if (!to.destroyed) to.end();
      });
    });
  }

  /** Stops listening, ends every connection still open and waits until all are closed. */
  async [Symbol.asyncDispose](): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const destroy of this.#cutters) destroy();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    await Promise.all([closed, ...this.#open]);
  }
}
