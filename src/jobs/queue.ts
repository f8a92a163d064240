/** Where a job stands. */
export type JobState = "queued" | "running" | "finished";

/**
 * Says how many threads a running job keeps busy now, at most the threads it was charged: fewer
 * during a one-thread phase (a probe, a measurement), none given for all of them again. The
 * queue lends the difference to waiting jobs.
 */
export type UseThreads = (threads?: number) => void;

/** The work of a job; must stop and reject soon after `signal` aborts. */
export type JobWork<T> = (
  signal: AbortSignal,
  onProgress: (fraction: number) => void,
  useThreads: UseThreads,
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
  async start(useThreads: UseThreads = () => {}): Promise<void> {
    this.state = "running";
    try {
      this.#controller.signal.throwIfAborted();
      this.#result.resolve(
        await this.#work(
          this.#controller.signal,
          (fraction) => this.progress = fraction,
          useThreads,
        ),
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
  readonly id: string;
  state: JobState;
  readonly done: Promise<unknown>;
  start(useThreads: UseThreads): Promise<void>;
  abort(reason: unknown): void;
}

/**
 * Threads every job needs first: it probes its upload (one ffprobe, src/jobs/process.ts) before
 * anything else, so a head of the line whose cost does not fit the lent threads can still start on
 * one of them.
 */
const PRELUDE_THREADS = 1;

/** A running job's share of the budget. */
interface Share {
  /** Threads charged to it. */
  cost: number;
  /** Threads it keeps busy now (≤ cost); the rest are lent. */
  using: number;
  /** Started on threads another job lent: it lends none itself until its cost fits the budget. */
  borrowing: boolean;
}

/** Options of {@linkcode JobQueue}. */
export interface JobQueueOptions {
  /** The CPU budget: threads the running jobs may keep busy together (`--cpus`). */
  cpus: number;
  /** Most jobs at once, whatever their threads (`--jobs`). Default `cpus`. */
  jobs?: number;
}

/**
 * Runs jobs first come first served within a CPU budget: each job costs the threads its ffmpeg
 * uses (an MP3 one, an x264 encode every core), and the next job starts when its cost fits beside
 * the running ones. A running job in a phase that keeps fewer threads busy (compress measuring a
 * probe) lends the rest: the first waiting job that fits in them starts, even past a head that
 * does not fit; if none fits, the head starts on them all the same, since its first phase (the
 * probe of its upload) takes one thread. A borrower runs to its end and oversubscribes the
 * lender's later phases: a compress beside a compress, each measuring its probes slower and
 * keeping its time budget with faster settings, rather than a thread left idle. Lent threads end
 * with their lender (a borrower whose cost then fits runs on as a job of its own, lending in turn),
 * so the head waits at most for the borrowers then running: a large job cannot starve.
 *
 * @example
 * ```ts
 * const queue = new JobQueue({ cpus: 2 });
 * queue.declareThreads("a1", 1); // an MP3 job: two of them run at once on two cores
 * const job = queue.submit(new Job("a1", async (signal) => await encode(signal)));
 * const output = await job.done;
 * ```
 */
export class JobQueue {
  /** The CPU budget in threads. */
  readonly cpus: number;
  /** Most jobs at once. */
  readonly concurrency: number;
  #waiting: QueuedJob[] = [];
  #running = new Map<QueuedJob, Share>();
  /** Threads declared for jobs not submitted yet, by job ID. */
  #declared = new Map<string, number>();

  constructor(options: JobQueueOptions) {
    for (const [name, value] of [["CPU budget", options.cpus], ["Job concurrency", options.jobs]]) {
      if (value !== undefined && (!Number.isInteger(value) || (value as number) < 1)) {
        throw new RangeError(`${name} must be a positive integer, got ${value}`);
      }
    }
    this.cpus = options.cpus;
    this.concurrency = options.jobs ?? options.cpus;
  }

  /**
   * Says how many threads the job with this ID will use (its plan's `threads`), before it is
   * submitted; an undeclared job costs the whole budget. Capped to the budget.
   */
  declareThreads(id: string, threads: number): void {
    this.#declared.set(id, Math.min(this.cpus, Math.max(1, Math.ceil(threads))));
  }

  /** Forgets a declaration whose job was never submitted (its upload failed). */
  forget(id: string): void {
    this.#declared.delete(id);
  }

  /** Adds a job; it starts as soon as its threads fit in the budget. */
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

  /** Threads the running jobs keep busy now, out of {@linkcode JobQueue.cpus}. */
  get usedThreads(): number {
    return this.#sum((share) => share.using);
  }

  /** Running jobs that started on threads another job lent. */
  get borrowers(): number {
    return this.#sum((share) => share.borrowing ? 1 : 0);
  }

  /** Threads the waiting jobs will need. */
  get waitingThreads(): number {
    return this.#waiting.reduce((sum, job) => sum + this.#cost(job), 0);
  }

  /** Stops a job, queued or running; its `done` rejects with `reason`. */
  cancel(job: QueuedJob, reason: unknown): void {
    const index = this.#waiting.indexOf(job);
    if (index >= 0) {
      this.#waiting.splice(index, 1);
      this.#declared.delete(job.id);
    }
    job.abort(reason);
  }

  /** Cancels every job and waits until the running ones have stopped. */
  async close(reason: unknown): Promise<void> {
    const all = [...this.#waiting, ...this.#running.keys()];
    this.#waiting = [];
    for (const job of all) job.abort(reason);
    await Promise.allSettled(all.map((job) => job.done));
  }

  /** Resolves when no job runs or waits (checked each time one ends). */
  async idle(): Promise<void> {
    while (this.#running.size > 0 || this.#waiting.length > 0) {
      await Promise.race([...this.#running.keys()].map((job) => job.done.catch(() => {})));
      await Promise.resolve();
    }
  }

  #cost(job: QueuedJob): number {
    return this.#declared.get(job.id) ?? this.cpus;
  }

  #sum(part: (share: Share) => number): number {
    let sum = 0;
    for (const share of this.#running.values()) sum += part(share);
    return sum;
  }

  /** Threads lenders do not use now, less those their borrowers run on. */
  #lent(): number {
    return this.#sum((share) => share.borrowing ? -share.cost : share.cost - share.using);
  }

  #pump(): void {
    while (this.#waiting.length > 0 && this.#running.size < this.concurrency) {
      const head = this.#waiting[0]!;
      if (this.#sum((share) => share.cost) + this.#cost(head) <= this.cpus) {
        this.#start(head, false);
        continue;
      }
      const lent = this.#lent();
      const borrower = this.#waiting.find((job) => this.#cost(job) <= lent) ??
        (lent >= PRELUDE_THREADS ? head : undefined);
      if (!borrower) break;
      this.#start(borrower, true);
    }
  }

  #start(job: QueuedJob, borrowing: boolean): void {
    this.#waiting.splice(this.#waiting.indexOf(job), 1);
    const cost = this.#cost(job);
    this.#declared.delete(job.id);
    const share: Share = { cost, using: cost, borrowing };
    this.#running.set(job, share);
    const useThreads: UseThreads = (threads) => {
      if (share.borrowing || this.#running.get(job) !== share) return;
      share.using = Math.min(cost, Math.max(1, Math.ceil(threads ?? cost)));
      this.#pump();
    };
    job.start(useThreads).finally(() => {
      this.#running.delete(job);
      this.#settleBorrowers();
      this.#pump();
    });
  }

  /**
   * Borrowers whose cost fits beside the other jobs' now (their lender ended) run on as jobs of
   * their own: charged as before, and lending in their one-thread phases like any job.
   */
  #settleBorrowers(): void {
    for (const share of this.#running.values()) {
      if (!share.borrowing) continue;
      const charged = this.#sum((other) => other.borrowing ? 0 : other.cost);
      if (charged + share.cost <= this.cpus) share.borrowing = false;
    }
  }
}
