/**
 * The sending side of an MMP connection: frames go out whole and in order, and the end lets the
 * last frame arrive.
 *
 * @module
 */
import { writeFileFrame, writeFrame } from "../protocol/frame_writer.ts";

/** How long the server keeps reading (and discarding) after its last frame, so it arrives. */
const LINGER_MS = 2000;

/** Frames out of one connection; `close` is the connection's own (it may run more than once). */
export class FrameOutput {
  readonly #conn: Deno.TcpConn;
  readonly #signal: AbortSignal;
  readonly #close: () => void;
  #writes: Promise<void> = Promise.resolve();

  constructor(conn: Deno.TcpConn, signal: AbortSignal, close: () => void) {
    this.#conn = conn;
    this.#signal = signal;
    this.#close = close;
  }

  /** Sends a JSON frame after every frame queued before it, so frames never interleave. */
  send(json: Record<string, unknown>): Promise<void> {
    return this.#queue(() => writeFrame(this.#conn, json));
  }

  /** Sends a frame whose payload is the file at `path` from `offset` on. */
  sendFile(
    json: Record<string, unknown>,
    mediaType: string,
    path: string,
    offset: number,
  ): Promise<void> {
    return this.#queue(() => writeFileFrame(this.#conn, json, mediaType, path, { offset }));
  }

  /**
   * Half-closes and discards what the client still sends for a moment. Closing with unread bytes
   * would send a TCP reset, which can destroy the last frame before the client reads it.
   */
  async linger(): Promise<void> {
    this.#conn.closeWrite();
    const deadline = performance.now() + LINGER_MS;
    const stop = () => this.#close();
    const timer = setTimeout(stop, LINGER_MS);
    this.#signal.addEventListener("abort", stop, { once: true });
    try {
      while (performance.now() < deadline) {
        if ((await this.#conn.read(new Uint8Array(65536))) === null) break;
      }
    } catch {
      /* closed by the timer or reset by the client */
    } finally {
      clearTimeout(timer);
      this.#signal.removeEventListener("abort", stop);
    }
  }

  #queue(write: () => Promise<void>): Promise<void> {
    const done = this.#writes.then(write);
    this.#writes = done.catch(() => {});
    return done;
  }
}
