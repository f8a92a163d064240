import { MmpError } from "../protocol/errors.ts";
import type { ByteSource } from "../protocol/frame_reader.ts";

/** Options of {@linkcode GuardedSource}. */
export interface GuardedSourceOptions {
  /** A read that waits longer than this fails with `TIMEOUT`; 0 disables the limits. */
  idleTimeoutMs: number;
  /**
   * Fewer bytes per second than this, averaged over each idle-timeout window, fail with
   * `TIMEOUT`: a client trickling a byte at a time cannot hold a slot forever. 0 disables it.
   */
  minBytesPerSecond?: number;
  /** Aborting fails the pending read with the signal's reason. */
  signal: AbortSignal;
}

/** How often the guard looks at the clock. */
const TICK_MS = 250;

/**
 * Wraps a connection so that a pending read can be ended from outside: by an idle timeout, a
 * too-slow upload, or an abort (shutdown). One timer per connection checks all three.
 */
export class GuardedSource implements ByteSource, Disposable {
  #inner: ByteSource;
  #idleMs: number;
  #minRate: number;
  #signal: AbortSignal;
  #readStartedAt = 0;
  #reading = false;
  #windowStart = performance.now();
  #windowBytes = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #interrupt!: Promise<never>;
  #reject!: (reason: unknown) => void;

  constructor(inner: ByteSource, options: GuardedSourceOptions) {
    this.#inner = inner;
    this.#idleMs = options.idleTimeoutMs;
    this.#minRate = options.minBytesPerSecond ?? 0;
    this.#signal = options.signal;
    this.#resetInterrupt();
    this.#signal.addEventListener("abort", this.#onAbort, { once: true });
    if (this.#idleMs > 0) this.#timer = setInterval(this.#check, Math.min(TICK_MS, this.#idleMs));
  }

  /** Turns the time limits off: once a job is accepted, a quiet client is fine. */
  disarm(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#idleMs = 0;
  }

  async read(p: Uint8Array): Promise<number | null> {
    this.#signal.throwIfAborted();
    const pending = this.#inner.read(p);
    this.#reading = true;
    this.#readStartedAt = performance.now();
    try {
      const n = await Promise.race([pending, this.#interrupt]);
      if (n !== null) this.#windowBytes += n;
      return n;
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

  #fail(description: string): void {
    this.#reject(new MmpError("TIMEOUT", description));
    this.#resetInterrupt();
    this.disarm();
  }

  #check = (): void => {
    const now = performance.now();
    const seconds = Math.round(this.#idleMs / 100) / 10;
    if (this.#reading && now - this.#readStartedAt >= this.#idleMs) {
      return this.#fail(`No data arrived for ${seconds} seconds`);
    }
    const window = now - this.#windowStart;
    if (window < this.#idleMs) return;
    const rate = this.#windowBytes / (window / 1000);
    if (this.#minRate > 0 && rate < this.#minRate) {
      return this.#fail(`The upload is too slow: ${Math.round(rate)} bytes/s over ${seconds} s`);
    }
    this.#windowStart = now;
    this.#windowBytes = 0;
  };

  #onAbort = (): void => {
    this.#reject(this.#signal.reason);
  };

  [Symbol.dispose](): void {
    this.disarm();
    this.#signal.removeEventListener("abort", this.#onAbort);
  }
}
