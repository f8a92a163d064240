import { MmpError } from "../protocol/errors.ts";
import type { ByteSource } from "../protocol/frame_reader.ts";

/** Options of {@linkcode GuardedSource}. */
export interface GuardedSourceOptions {
  /** A read that waits longer than this fails with `TIMEOUT`; 0 disables the limit. */
  idleTimeoutMs: number;
  /** Aborting fails the pending read with the signal's reason. */
  signal: AbortSignal;
}

/**
 * Wraps a connection so that a pending read can be ended from outside: by an idle timeout or by an
 * abort (shutdown, cancel). One lazy timer serves all reads, so the per-read cost stays tiny.
 */
export class GuardedSource implements ByteSource, Disposable {
  #inner: ByteSource;
  #idleMs: number;
  #signal: AbortSignal;
  #readStartedAt = 0;
  #reading = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #interrupt!: Promise<never>;
  #reject!: (reason: unknown) => void;

  constructor(inner: ByteSource, options: GuardedSourceOptions) {
    this.#inner = inner;
    this.#idleMs = options.idleTimeoutMs;
    this.#signal = options.signal;
    this.#resetInterrupt();
    this.#signal.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** Turns the idle limit on or off (the server waits for a quiet client once a job is accepted). */
  setIdleTimeout(ms: number): void {
    this.#idleMs = ms;
  }

  async read(p: Uint8Array): Promise<number | null> {
    this.#signal.throwIfAborted();
    const pending = this.#inner.read(p);
    this.#reading = true;
    this.#readStartedAt = performance.now();
    if (this.#idleMs > 0 && this.#timer === undefined) this.#arm(this.#idleMs);
    try {
      return await Promise.race([pending, this.#interrupt]);
    } catch (err) {
      pending.catch(() => {}); // the socket is closed by whoever handles the interruption
      throw err;
    } finally {
      this.#reading = false;
    }
  }

  #resetInterrupt(): void {
    this.#interrupt = new Promise<never>((_, reject) => this.#reject = reject);
    this.#interrupt.catch(() => {});
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(this.#onTimer, ms);
  }

  #onTimer = (): void => {
    this.#timer = undefined;
    if (!this.#reading || this.#idleMs <= 0) return;
    const waited = performance.now() - this.#readStartedAt;
    if (waited < this.#idleMs) return this.#arm(this.#idleMs - waited);
    const seconds = Math.round(this.#idleMs / 100) / 10;
    this.#reject(new MmpError("TIMEOUT", `No data arrived for ${seconds} seconds`));
    this.#resetInterrupt();
  };

  #onAbort = (): void => {
    this.#reject(this.#signal.reason);
  };

  [Symbol.dispose](): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#signal.removeEventListener("abort", this.#onAbort);
  }
}
