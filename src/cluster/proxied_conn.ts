/**
 * Connections from a load balancer: the PROXY header is read off, its client address becomes the
 * connection's `remoteAddr` (as go-proxyproto and others do), and the bytes read past the header are
 * replayed to the protocol behind it.
 *
 * @module
 */
import { normalizeIp } from "../jobs/ip_slots.ts";
import { looksLikeProxyHeader, readProxyHeader } from "./proxy_protocol.ts";

/**
 * A TCP connection whose first bytes were read already: `read` (and `readable`) hand them on first,
 * and `remoteAddr` is the client the PROXY header named (else the socket's peer).
 */
export class ProxiedConn implements Deno.TcpConn {
  readonly #conn: Deno.TcpConn;
  readonly remoteAddr: Deno.NetAddr;
  #prefix: Uint8Array;
  #readable: ReadableStream<Uint8Array<ArrayBuffer>> | undefined;

  constructor(conn: Deno.TcpConn, prefix: Uint8Array, remoteAddr?: Deno.NetAddr) {
    this.#conn = conn;
    this.#prefix = prefix;
    this.remoteAddr = remoteAddr ?? conn.remoteAddr;
  }

  get localAddr(): Deno.NetAddr {
    return this.#conn.localAddr;
  }

  read(p: Uint8Array): Promise<number | null> {
    if (this.#prefix.length === 0) return this.#conn.read(p);
    const n = Math.min(p.length, this.#prefix.length);
    p.set(this.#prefix.subarray(0, n));
    this.#prefix = this.#prefix.subarray(n);
    return Promise.resolve(n);
  }

  write(p: Uint8Array): Promise<number> {
    return this.#conn.write(p);
  }

  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    return this.#readable ??= new ReadableStream({
      type: "bytes",
      pull: async (controller) => {
        const buffer = new Uint8Array(65536);
        const n = await this.read(buffer);
        if (n === null) controller.close();
        else controller.enqueue(buffer.subarray(0, n));
      },
      cancel: () => this.close(),
    });
  }

  get writable(): WritableStream<Uint8Array<ArrayBufferLike>> {
    return this.#conn.writable;
  }

  closeWrite(): Promise<void> {
    return this.#conn.closeWrite();
  }

  close(): void {
    this.#conn.close();
  }

  setNoDelay(noDelay?: boolean): void {
    this.#conn.setNoDelay(noDelay);
  }

  setKeepAlive(keepAlive?: boolean): void {
    this.#conn.setKeepAlive(keepAlive);
  }

  ref(): void {
    this.#conn.ref();
  }

  unref(): void {
    this.#conn.unref();
  }

  [Symbol.dispose](): void {
    try {
      this.close();
    } catch { /* closed already */ }
  }
}

/** Options of {@linkcode acceptProxied}. */
export interface AcceptProxiedOptions {
  /** Peers whose connections must start with a PROXY header: the load balancers. */
  trusted: ReadonlySet<string>;
  /** The whole header must arrive within this long. Default 3000. */
  headerTimeoutMs?: number;
  /** How long a direct client may take to send its first bytes. */
  firstBytesTimeoutMs: number;
}

/** A connection refused by {@linkcode acceptProxied}, and why (for the log). */
export class ProxyRefusal extends Error {
  /** No byte arrived at all (a balancer's plain TCP check): not worth a log line. */
  readonly quiet: boolean;
  constructor(message: string, quiet = false) {
    super(message);
    this.name = "ProxyRefusal";
    this.quiet = quiet;
  }
}

/**
 * Applies `--proxy-protocol` to a new connection. From a trusted balancer it reads the header:
 * `PROXY` gives the client's address, `LOCAL` (a health check) keeps the socket's own. From any
 * other peer it looks at the first bytes: a PROXY header there is a forgery. Throws
 * {@linkcode ProxyRefusal} when the connection must be closed unread.
 */
export async function acceptProxied(
  conn: Deno.TcpConn,
  options: AcceptProxiedOptions,
): Promise<ProxiedConn> {
  const peer = normalizeIp(conn.remoteAddr.hostname);
  if (options.trusted.has(peer)) {
    let parsed;
    try {
      parsed = await readProxyHeader(conn, { timeoutMs: options.headerTimeoutMs ?? 3000 });
    } catch (err) {
      const message = (err as Error).message;
      throw new ProxyRefusal(
        `PROXY header from ${peer}: ${message}`,
        message === "Closed before any header",
      );
    }
    const source = parsed.header.source;
    const addr: Deno.NetAddr | undefined = source
      ? { transport: "tcp", hostname: source.hostname, port: source.port }
      : undefined;
    return new ProxiedConn(conn, parsed.rest, addr);
  }
  const first = await readFirstBytes(conn, options.firstBytesTimeoutMs);
  if (looksLikeProxyHeader(first)) {
    throw new ProxyRefusal(`PROXY header from ${peer}, which is not a trusted balancer`);
  }
  return new ProxiedConn(conn, first);
}

/** Reads until the bytes cannot start a PROXY header any more (one read, nearly always). */
async function readFirstBytes(conn: Deno.TcpConn, timeoutMs: number): Promise<Uint8Array> {
  const buffer = new Uint8Array(65536);
  let filled = 0;
  const deadline = performance.now() + timeoutMs;
  while (filled < 12 && (filled === 0 || looksLikeProxyHeader(buffer.subarray(0, filled)))) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const pending = conn.read(buffer.subarray(filled));
    pending.catch(() => {});
    const n = await Promise.race([
      pending,
      new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), Math.max(0, deadline - performance.now()));
      }),
    ]).finally(() => clearTimeout(timer));
    if (n === "late") throw new ProxyRefusal("No data within the idle timeout", true);
    if (n === null) break;
    filled += n;
  }
  return buffer.slice(0, filled);
}
