import { createConnection, type Socket } from "node:net";

/** The part of a connection the client uses; a `Deno.TcpConn` is one. */
export interface ClientConn extends Disposable {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/** Options of {@linkcode connectTo}. */
export interface ConnectOptions {
  hostname: string;
  port: number;
  /** Local source address, such as `127.0.0.2`. */
  localAddress?: string;
}

/**
 * Opens a TCP connection. `Deno.connect` cannot pick the source address, so a connection with
 * `localAddress` goes through `node:net` behind the same read/write interface.
 */
export async function connectTo(options: ConnectOptions): Promise<ClientConn> {
  if (options.localAddress === undefined) {
    const conn = await Deno.connect({ hostname: options.hostname, port: options.port });
    conn.setNoDelay(true);
    return conn;
  }
  return await NodeConn.open(options);
}

/** A `node:net` socket with `Deno.Conn`-style pull reads and promise writes. */
class NodeConn implements ClientConn {
  #socket: Socket;
  #chunks: Uint8Array[] = [];
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      if (this.#chunks.length > 16) socket.pause();
      this.#notify();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("error", (err: Error) => {
      this.#error = err;
      this.#notify();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#notify();
    });
  }

  static open(options: ConnectOptions): Promise<NodeConn> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({
        host: options.hostname,
        port: options.port,
        localAddress: options.localAddress!,
        noDelay: true,
      });
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(new NodeConn(socket));
      });
    });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    const chunk = this.#chunks[0]!;
    const n = Math.min(p.length, chunk.length);
    p.set(chunk.subarray(0, n));
    if (n === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(n);
    if (this.#chunks.length <= 4) this.#socket.resume();
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#error) return Promise.reject(this.#error);
    const copy = p.slice();
    return new Promise((resolve, reject) => {
      this.#socket.write(copy, (err) => err ? reject(err) : resolve(copy.length));
    });
  }

  close(): void {
    this.#socket.destroy();
    this.#ended = true;
    this.#notify();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Closes a connection that may be closed already. */
export function closeQuietly(conn: ClientConn | undefined): void {
  try {
    conn?.close();
  } catch { /* closed already */ }
}
