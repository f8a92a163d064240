import { MmpError } from "../protocol/errors.ts";
import type { ClientJob } from "../jobs/client_job.ts";
import { jobLogLine } from "../jobs/core.ts";
import { describeError } from "./errors.ts";

/** Byte ranges of a result delivered so far, merged. */
class Coverage {
  #ranges: [number, number][] = [];

  /** Adds `[start, end)`; returns whether `[0, size)` is now covered. */
  add(start: number, end: number, size: number): boolean {
    const ranges = [...this.#ranges, [start, end] as [number, number]].sort((a, b) => a[0] - b[0]);
    const merged: [number, number][] = [];
    for (const [s, e] of ranges) {
      const last = merged.at(-1);
      if (last && s <= last[1]) last[1] = Math.max(last[1], e);
      else merged.push([s, e]);
    }
    this.#ranges = merged;
    return merged.length === 1 && merged[0]![0] === 0 && merged[0]![1] >= size;
  }
}

/** One HTTP job in the table. */
export interface JobEntry {
  readonly job: ClientJob;
  /** Removes the entry (and deletes what it still holds) when it fires. */
  timer: ReturnType<typeof setTimeout> | undefined;
  readonly coverage: Coverage;
  /** Set once the job's log line is written. */
  logged: boolean;
}

/** Options of {@linkcode JobTable}. */
export interface JobTableOptions {
  /** How long a result waits for its download, and a failed job's record stays. */
  ttlMs: number;
  log: (line: string) => void;
}

/**
 * The HTTP API's jobs by ID. A result is kept until it has been downloaded completely once, or
 * until the TTL runs out; its quota is held until then, but its IP's slot is freed as soon as it
 * is ready, so the client can send the next file while it downloads this one.
 */
export class JobTable {
  readonly #entries = new Map<string, JobEntry>();
  readonly #ttlMs: number;
  readonly #log: (line: string) => void;
  #closed = false;

  constructor(options: JobTableOptions) {
    this.#ttlMs = options.ttlMs;
    this.#log = options.log;
  }

  /** Adds a job whose upload is complete; follows it to its end. */
  add(job: ClientJob): void {
    const entry: JobEntry = { job, timer: undefined, coverage: new Coverage(), logged: false };
    this.#entries.set(job.id, entry);
    job.done.then(
      async () => {
        await job.releaseSlot();
        this.#expireIn(entry);
      },
      async (err) => {
        this.#logEnd(entry, describeError(err));
        await job.dispose(err);
        this.#expireIn(entry);
      },
    );
  }

  /** The entry of job `id` if `ip` created it; other clients cannot tell it exists. */
  find(id: string, ip: string): JobEntry | undefined {
    const entry = this.#entries.get(id);
    return entry?.job.ip === ip ? entry : undefined;
  }

  /** Cancels the job (ffmpeg killed) and deletes its files; the record stays until the TTL. */
  async cancel(entry: JobEntry): Promise<void> {
    const reason = new MmpError("CANCELLED", "The job was cancelled as you asked");
    entry.job.cancel(reason);
    this.#logEnd(entry, describeError(reason));
    await entry.job.dispose(reason);
    this.#expireIn(entry);
  }

  /** Records that `[start, end)` of the result reached the client; the whole of it ends the job. */
  async delivered(entry: JobEntry, start: number, end: number): Promise<void> {
    const size = entry.job.output?.size ?? Infinity;
    if (!entry.coverage.add(start, end, size)) return;
    this.#logEnd(entry, "ok");
    await this.#remove(entry);
  }

  /** Deletes every job and its files now (shutdown). */
  async close(reason?: unknown): Promise<void> {
    this.#closed = true;
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    await Promise.all(entries.map((entry) => {
      clearTimeout(entry.timer);
      return entry.job.dispose(reason);
    }));
  }

  #expireIn(entry: JobEntry): void {
    clearTimeout(entry.timer);
    if (this.#closed || this.#entries.get(entry.job.id) !== entry) return;
    entry.timer = setTimeout(() => {
      this.#logEnd(entry, "result expired");
      this.#remove(entry);
    }, this.#ttlMs);
  }

  async #remove(entry: JobEntry): Promise<void> {
    clearTimeout(entry.timer);
    if (this.#entries.get(entry.job.id) === entry) this.#entries.delete(entry.job.id);
    await entry.job.dispose();
  }

  #logEnd(entry: JobEntry, outcome: string | ReturnType<typeof describeError>): void {
    if (entry.logged) return;
    entry.logged = true;
    const job = entry.job;
    if (typeof outcome !== "string" && outcome.detail) {
      this.#log(`error detail (${job.ip}): ${outcome.detail}`);
    }
    this.#log(jobLogLine({
      id: job.id,
      ip: job.ip,
      op: job.request.op,
      inBytes: job.size,
      outBytes: job.output?.size ?? 0,
      startedAt: job.startedAt,
      outcome: typeof outcome === "string" ? outcome : outcome.body.code,
      via: "http",
    }));
  }
}
