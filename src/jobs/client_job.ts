import { MmpError } from "../protocol/errors.ts";
import type { Hash } from "node:crypto";
import { sha256Stream } from "../protocol/checksum.ts";
import { writeAll } from "../protocol/frame_writer.ts";
import type { JobRequest } from "../media/operations.ts";
import type { JobCore } from "./core.ts";
import type { IpLease } from "./ip_slots.ts";
import { type ProcessedOutput, processUpload } from "./process.ts";
import { Job } from "./queue.ts";
import { type JobFiles, outputAllowance, type Reservation } from "./storage.ts";

/** A streaming hash of the first `bytes` bytes of the file at `path`. */
async function hashPrefix(path: string, bytes: number): Promise<Hash> {
  const hash = sha256Stream();
  using file = await Deno.open(path, { read: true });
  const buf = new Uint8Array(1 << 20);
  let left = bytes;
  while (left > 0) {
    const n = await file.read(buf.subarray(0, Math.min(buf.length, left)));
    if (n === null) throw new Error("The partial upload is shorter than recorded");
    hash.update(buf.subarray(0, n));
    left -= n;
  }
  return hash;
}

/** The client left; nothing can be sent to it. */
export class ClientGone extends Error {
  constructor() {
    super("Client disconnected");
    this.name = "ClientGone";
  }
}

/** Where a client's job stands. */
export type ClientJobState = "receiving" | "queued" | "running" | "done" | "failed" | "cancelled";

/** A job's progress, as status answers report it. */
export interface JobStatus {
  state: ClientJobState;
  /** 0..1, rounded to 0.001. */
  progress: number;
  /** 0 unless queued: then the 1-based place in the waiting line. */
  queue_position: number;
}

/** What a client learns about a finished job's result. */
export interface ResultDescription {
  /** The suggested file name: the client's base name and the output's extension. */
  name: string;
  size: number;
  sha256: string;
  /** `input_bytes`, `output_bytes` and the operation's own figures. */
  stats: Record<string, unknown>;
}

/** Receives one chunk of the upload; the chunk is only valid until the promise settles. */
export type UploadSink = (chunk: Uint8Array) => Promise<void>;

/** What {@linkcode JobCore.admit} hands a new job. */
export interface ClientJobInit {
  id: string;
  lease: IpLease;
  request: JobRequest;
  extension: string;
  size: number;
  reservation: Reservation;
  /** Names the job's files: never the client's job ID. */
  files: JobFiles;
  /** The client's upload id: the job is resumable (see `ResumeRegistry`). */
  uploadId?: string;
  /** What a resumed upload must repeat: the request's JSON (sorted) and its media type. */
  signature?: string;
}

/**
 * One client's job: holds its IP slot, its quota and its files from admission until
 * {@linkcode ClientJob.dispose}, which frees them all.
 */
export class ClientJob {
  readonly id: string;
  readonly ip: string;
  readonly request: JobRequest;
  /** The input's allow-listed extension. */
  readonly extension: string;
  /** The upload's size in bytes. */
  readonly size: number;
  /** `performance.now()` at admission, for the log. */
  readonly startedAt = performance.now();
  /** The client's upload id when the job is resumable. */
  readonly uploadId: string | undefined;
  /** The request and media type a resumed upload must repeat. */
  readonly signature: string;
  readonly #core: JobCore;
  readonly #files: JobFiles;
  readonly #settled = Promise.withResolvers<ProcessedOutput>();
  #lease: IpLease | undefined;
  #reservation: Reservation | undefined;
  #job: Job<ProcessedOutput> | undefined;
  #output: ProcessedOutput | undefined;
  #error: unknown;
  #failed = false;
  #cancelled = false;
  #stopReceiving: unknown;
  #disposing: Promise<void> | undefined;
  /** Upload bytes on disk (and in `#hash`) so far. */
  #received = 0;
  #hash: Hash | undefined;
  #receiving = false;

  constructor(core: JobCore, init: ClientJobInit) {
    this.#core = core;
    this.id = init.id;
    this.ip = init.lease.ip;
    this.#lease = init.lease;
    this.request = init.request;
    this.extension = init.extension;
    this.size = init.size;
    this.#reservation = init.reservation;
    this.#files = init.files;
    this.uploadId = init.uploadId;
    this.signature = init.signature ?? "";
    this.#settled.promise.then(
      (output) => this.#output = output,
      (err) => {
        this.#error = err;
        this.#failed = true;
      },
    );
  }

  /** Settles when the job has run: the checked, hashed output, or why there is none. */
  get done(): Promise<ProcessedOutput> {
    return this.#settled.promise;
  }

  /** Upload bytes the server holds so far (all of them once accepted). */
  get received(): number {
    return this.#received;
  }

  /** Whether the whole upload arrived, matched its checksum and became a job. */
  get accepted(): boolean {
    return this.#job !== undefined;
  }

  /** The output, once the job is done (its file exists until `dispose`). */
  get output(): ProcessedOutput | undefined {
    return this.#output;
  }

  /** Why the job failed, once it has. */
  get error(): unknown {
    return this.#error;
  }

  get state(): ClientJobState {
    if (this.#cancelled) return "cancelled";
    if (this.#output) return "done";
    if (this.#failed) {
      return this.#error instanceof MmpError && this.#error.code === "CANCELLED"
        ? "cancelled"
        : "failed";
    }
    if (!this.#job) return "receiving";
    return this.#core.queue.position(this.#job) > 0 ? "queued" : "running";
  }

  status(): JobStatus {
    const state = this.state;
    const progress = state === "done" ? 1 : Math.round((this.#job?.progress ?? 0) * 1000) / 1000;
    const position = this.#job ? this.#core.queue.position(this.#job) : 0;
    return { state, progress, queue_position: state === "queued" ? position : 0 };
  }

  /**
   * Streams the upload to a temporary name: `copy` passes the bytes from `offset` to the end to the
   * sink. The file gets its input name only when complete and its checksum (when sent) matches;
   * then the job joins the queue. A resumable upload that breaks keeps what arrived (and its hash
   * so far): `receive` may be called again with an `offset` up to {@linkcode received}.
   */
  async receive(copy: (sink: UploadSink) => Promise<void>, offset = 0): Promise<void> {
    if (this.#job || this.#disposing || this.#receiving) {
      throw new Error("The upload was received already");
    }
    if (offset > this.#received || (offset > 0 && this.uploadId === undefined)) {
      throw new Error(`Cannot resume at ${offset}: ${this.#received} bytes are held`);
    }
    this.#receiving = true;
    try {
      await this.#receiveFrom(copy, offset);
    } finally {
      this.#receiving = false;
    }
    const expected = this.request.sha256;
    if (this.#received !== this.size) {
      throw new MmpError(
        "BAD_REQUEST",
        `The upload ended after ${this.#received} of its ${this.size} bytes`,
      );
    }
    if (this.#hash && this.#hash.digest("hex") !== expected) {
      throw new MmpError(
        "CHECKSUM_MISMATCH",
        "The uploaded file does not match the sha256 sent with it",
      );
    }
    const input = this.#files.path(`input.${this.extension}`);
    await Deno.rename(this.#files.path("upload.part"), input);
    this.#submit(input);
  }

  async #receiveFrom(copy: (sink: UploadSink) => Promise<void>, offset: number): Promise<void> {
    const partial = this.#files.path("upload.part");
    const first = this.#hash === undefined && this.#received === 0;
    using file = await Deno.open(partial, { write: true, createNew: first });
    await file.truncate(offset);
    if (first || offset < this.#received) {
      // Starting, or going back: the hash restarts from the bytes kept before `offset`.
      this.#hash = this.request.sha256 ? await hashPrefix(partial, offset) : undefined;
      this.#received = offset;
    }
    await file.seek(offset, Deno.SeekMode.Start);
    await copy(async (chunk) => {
      if (this.#stopReceiving !== undefined) throw this.#stopReceiving;
      if (this.#received + chunk.length > this.size) {
        throw new MmpError("BAD_REQUEST", "The upload is longer than its announced size");
      }
      this.#hash?.update(chunk);
      await writeAll(file, chunk);
      this.#received += chunk.length;
    });
  }

  #submit(input: string): void {
    const core = this.#core;
    const job = this.#job = new Job(this.id, (signal, onProgress, useThreads) =>
      processUpload({
        input,
        inputExtension: this.extension,
        plan: this.request.plan,
        files: this.#files,
        tools: core.tools,
        signal,
        maxOutputBytes: outputAllowance(this.size),
        onProgress,
        useThreads,
        limits: core.limits,
      }));
    job.done.then(this.#settled.resolve, this.#settled.reject);
    core.queue.submit(job);
  }

  /** What the client is told about the result, once the job is done. */
  describeResult(): ResultDescription | undefined {
    const output = this.#output;
    if (!output) return undefined;
    return {
      name: `${this.request.baseName}.${output.format}`,
      size: output.size,
      sha256: output.sha256,
      stats: { ...output.stats, input_bytes: this.size, output_bytes: output.size },
    };
  }

  /**
   * Stops the job: a queued or running one ends with `reason` (ffmpeg is killed), an upload stops
   * at its next chunk, and a finished one reports `cancelled`. Files stay until `dispose`.
   */
  cancel(reason: unknown = new MmpError("CANCELLED", "The job was cancelled as you asked")): void {
    if (reason instanceof MmpError && reason.code === "CANCELLED") this.#cancelled = true;
    if (!this.#job) this.#stopReceiving ??= reason;
    else if (this.#job.state !== "finished") this.#core.queue.cancel(this.#job, reason);
  }

  /** Frees the IP's slot early (the HTTP API does once a result waits for download). */
  async releaseSlot(): Promise<void> {
    const lease = this.#lease;
    this.#lease = undefined;
    await lease?.release();
  }

  /**
   * Ends the job and frees everything it holds: ffmpeg (stopped with `reason`), its files, its
   * quota, its IP's slot. Idempotent; later calls wait for the first.
   */
  dispose(reason: unknown = new ClientGone()): Promise<void> {
    return this.#disposing ??= (async () => {
      if (this.#job) {
        if (this.#job.state !== "finished") this.#core.queue.cancel(this.#job, reason);
        await this.#job.done.catch(() => {});
      } else {
        this.#settled.reject(reason);
      }
      await this.#settled.promise.catch(() => {});
      await this.#files[Symbol.asyncDispose]();
      this.#reservation?.[Symbol.dispose]();
      this.#reservation = undefined;
      await this.releaseSlot();
    })();
  }
}
