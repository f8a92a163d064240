/** Where a job stands. */
export type JobState = "queued" | "running" | "finished";

/** The work of a job; must stop and reject soon after `signal` aborts. */
export type JobWork<T> = (
  signal: AbortSignal,
  onProgress: (fraction: number) => void,
) => Promise<T>;

/** A unit of work in the {@linkcode JobQueue}, with progress and cancellation. */
export class Job<T> {
  readonly id: string;
  state: JobState = "queued";
  /** Fraction done, 0..1, reported by the work. */
  progress = 0;
  readonly #work: JobWork<T>;
  readonly #controller = new AbortController();
  readonly #result = Promise.withResolvers<T>();

  constructor(id: string, work: JobWork<T>) {
    this.id = id;
    this.#work = work;
    this.#result.promise.catch(() => {});
  }

  /** Settles when the job finishes, fails or is cancelled. */
  get done(): Promise<T> {
    return this.#result.promise;
  }

  /** @internal Runs the work; used by the queue. */
  async start(): Promise<void> {
    this.state = "running";
    try {
      this.#controller.signal.throwIfAborted();
      this.#result.resolve(
        await this.#work(this.#controller.signal, (fraction) => this.progress = fraction),
      );
    } catch (err) {
      this.#result.reject(this.#controller.signal.aborted ? this.#controller.signal.reason : err);
    } finally {
      this.state = "finished";
    }
  }

  /** @internal Ends the job with `reason`; used by the queue. */
  abort(reason: unknown): void {
    this.#controller.abort(reason);
    if (this.state === "queued") {
      this.state = "finished";
      this.#result.reject(reason);
    }
  }
}

/** What the queue needs of a job, whatever its result type. */
interface QueuedJob {
  state: JobState;
  readonly done: Promise<unknown>;
  start(): Promise<void>;
  abort(reason: unknown): void;
}

/**
 * Runs jobs with at most `concurrency` at once, first come first served.
 *
 * @example
 * ```ts
 * const queue = new JobQueue(2);
 * const job = queue.submit(new Job("a1", async (signal) => await encode(signal)));
 * const output = await job.done;
 * ```
 */
export class JobQueue {
  readonly concurrency: number;
  #waiting: QueuedJob[] = [];
  #running = new Set<QueuedJob>();

  constructor(concurrency: number) {
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError(`Job concurrency must be a positive integer, got ${concurrency}`);
    }
    this.concurrency = concurrency;
  }

  /** Adds a job; it starts as soon as a slot is free. */
  submit<T>(job: Job<T>): Job<T> {
    this.#waiting.push(job);
    this.#pump();
    return job;
  }

  /** 0 for a running job, else its 1-based place in the waiting line. */
  position(job: QueuedJob): number {
    const index = this.#waiting.indexOf(job);
    return index < 0 ? 0 : index + 1;
  }

  /** Jobs running now and jobs waiting. */
  get size(): { running: number; waiting: number } {
    return { running: this.#running.size, waiting: this.#waiting.length };
  }

  /** Stops a job, queued or running; its `done` rejects with `reason`. */
  cancel(job: QueuedJob, reason: unknown): void {
    const index = this.#waiting.indexOf(job);
    if (index >= 0) this.#waiting.splice(index, 1);
    job.abort(reason);
  }

  /** Cancels every job and waits until the running ones have stopped. */
  async close(reason: unknown): Promise<void> {
    const all = [...this.#waiting, ...this.#running];
    this.#waiting = [];
    for (const job of all) job.abort(reason);
    await Promise.allSettled(all.map((job) => job.done));
  }

  #pump(): void {
    while (this.#running.size < this.concurrency && this.#waiting.length > 0) {
      const job = this.#waiting.shift()!;
      this.#running.add(job);
      job.start().finally(() => {
        this.#running.delete(job);
        this.#pump();
      });
    }
  }
}
