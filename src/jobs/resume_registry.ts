/**
 * Resumable jobs: a job whose client sent an upload id outlives its connection for the resume
 * window. The registry knows every such job, who holds it now (a connection) or, while nobody does,
 * when it expires. It binds each job to its client's IP: a lookup from another address finds
 * nothing.
 *
 * @module
 */
import type { ClientJob } from "./client_job.ts";

/** Whoever holds a resumable job now: an MMP session. */
export interface JobHolder {
  /** Makes the holder let go of its job (closes its connection); settles once it has. */
  detach(): Promise<void>;
}

interface Entry {
  job: ClientJob;
  /** The client's upload id, bound to its IP. */
  key: string;
  holder: JobHolder | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** How long a new holder waits for the old one to let go before it gives up. */
const TAKEOVER_MS = 10_000;

function uploadKey(ip: string, uploadId: string): string {
  return `${ip} ${uploadId}`;
}

/**
 * The resumable jobs of one server, held or parked.
 *
 * @example
 * ```ts
 * const registry = new ResumeRegistry(900_000);
 * registry.add(job, session);
 * registry.release(job, session, true, () => log("expired")); // parked until reattached or expired
 * const found = registry.findJob(ip, jobId);
 * if (found && await registry.take(found, otherSession)) { ... }
 * ```
 */
export class ResumeRegistry {
  /** How long a parked job waits, in milliseconds; 0 turns resuming off. */
  readonly windowMs: number;
  readonly #byUpload = new Map<string, Entry>();
  readonly #byJob = new Map<ClientJob, Entry>();
  #closed = false;
  #uploadsClosed = false;

  constructor(windowMs: number) {
    this.windowMs = windowMs;
  }

  /** Whether this server offers resumable uploads and reattaching. */
  get enabled(): boolean {
    return this.windowMs > 0 && !this.#closed;
  }

  /** Resumable jobs now, held or parked. */
  get size(): number {
    return this.#byJob.size;
  }

  /** Resumable jobs that no connection holds now. */
  get parked(): number {
    return [...this.#byJob.values()].filter((entry) => entry.holder === undefined).length;
  }

  /** Registers a new resumable job, held by `holder`. */
  add(job: ClientJob, holder: JobHolder): void {
    if (job.uploadId === undefined) throw new Error("Only a job with an upload id can resume");
    const key = uploadKey(job.ip, job.uploadId);
    if (this.#byUpload.has(key)) throw new Error("The upload id is registered already");
    const entry = { job, key, holder, timer: undefined };
    this.#byUpload.set(key, entry);
    this.#byJob.set(job, entry);
  }

  /** The job of upload `uploadId` from `ip`, if any. */
  findUpload(ip: string, uploadId: string): ClientJob | undefined {
    return this.#byUpload.get(uploadKey(ip, uploadId))?.job;
  }

  /** The accepted job `jobId` from `ip`, if any. */
  findJob(ip: string, jobId: string): ClientJob | undefined {
    for (const { job } of this.#byJob.values()) {
      if (job.ip === ip && job.id === jobId && job.accepted) return job;
    }
    return undefined;
  }

  /** Whether a job from `ip` waits for its client to come back. */
  hasParked(ip: string): boolean {
    for (const entry of this.#byJob.values()) {
      if (entry.job.ip === ip && entry.holder === undefined) return true;
    }
    return false;
  }

  /**
   * Makes `holder` the job's holder: a parked job stops its expiry clock, a held one is taken over
   * (its old connection is closed: a client that comes back knows better than a server that has
   * not noticed the break). False when the job has gone meanwhile.
   */
  async take(job: ClientJob, holder: JobHolder): Promise<boolean> {
    const entry = this.#byJob.get(job);
    if (!entry) return false;
    if (entry.holder === holder) return true;
    clearTimeout(entry.timer);
    entry.timer = undefined;
    const previous = entry.holder;
    entry.holder = holder;
    if (previous) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const gaveUp = new Promise<void>((resolve) => timer = setTimeout(resolve, TAKEOVER_MS));
      await Promise.race([previous.detach(), gaveUp]).finally(() => clearTimeout(timer));
    }
    return this.#byJob.get(job) === entry && entry.holder === holder;
  }

  /**
   * `holder` lets go of `job`. With `keep`, the job is parked for the window (then `onExpire`
   * disposes it); without, it leaves the registry. True when the job is no longer the holder's to
   * dispose: parked, or taken over by another holder.
   */
  release(job: ClientJob, holder: JobHolder, keep: boolean, onExpire: () => void): boolean {
    const entry = this.#byJob.get(job);
    if (!entry) return false;
    if (entry.holder !== holder) return true;
    if (!keep || !this.enabled || (this.#uploadsClosed && !job.accepted)) {
      this.#forget(entry);
      return false;
    }
    entry.holder = undefined;
    entry.timer = setTimeout(() => {
      if (this.#byJob.get(job) !== entry || entry.holder !== undefined) return;
      this.#forget(entry);
      onExpire();
    }, this.windowMs);
    return true;
  }

  #forget(entry: Entry): void {
    clearTimeout(entry.timer);
    this.#byJob.delete(entry.job);
    if (this.#byUpload.get(entry.key) === entry) this.#byUpload.delete(entry.key);
  }

  /**
   * Keeps no partial upload from now on and disposes the parked ones (a draining server); accepted
   * jobs still wait for their clients.
   */
  async closeUploads(reason: unknown): Promise<void> {
    this.#uploadsClosed = true;
    const parked = [...this.#byJob.values()].filter((e) =>
      e.holder === undefined && !e.job.accepted
    );
    for (const entry of parked) this.#forget(entry);
    await Promise.all(parked.map((entry) => entry.job.dispose(reason)));
  }

  /** Stops resuming and disposes every parked job (the held ones end with their connections). */
  async close(reason: unknown): Promise<void> {
    this.#closed = true;
    const parked = [...this.#byJob.values()].filter((entry) => entry.holder === undefined);
    for (const entry of parked) this.#forget(entry);
    await Promise.all(parked.map((entry) => entry.job.dispose(reason)));
  }
}
