import { MmpError } from "../protocol/errors.ts";
import { FrameError } from "../protocol/frame.ts";
import { type FrameHead, FrameReader, TruncatedFrameError } from "../protocol/frame_reader.ts";
import { ClientGone, type ClientJob } from "../jobs/client_job.ts";
import { type JobCore, jobLogLine, requestSignature } from "../jobs/core.ts";
import { toErrorReport } from "../jobs/error_report.ts";
import { normalizeIp } from "../jobs/ip_slots.ts";
import {
  isDisconnect,
  jobIdOf,
  noPayload,
  offsetOf,
  onlyKeys,
  resumeMismatch,
  unknownJob,
  unknownUpload,
  uploadIdOf,
} from "./request_fields.ts";
import { GuardedSource } from "../jobs/guarded_source.ts";
import type { JobHolder } from "../jobs/resume_registry.ts";
import { FrameOutput } from "./frame_output.ts";

/** What every connection shares with the server. */
export interface ServerContext {
  /** The job lifecycle, shared with the HTTP API. */
  core: JobCore;
  idleTimeoutMs: number;
  /** Uploads slower than this (bytes per second, over each idle-timeout window) are cut off. */
  minUploadBytesPerSecond: number;
  /** Connections already open (checked before this one counts), and the most allowed. */
  connections: () => number;
  maxConnections: number;
  /** Aborted with a `SHUTTING_DOWN` error when the server stops. */
  signal: AbortSignal;
  log: (line: string) => void;
}

/** Serves one connection, which carries one job (or one `info` answer), to its end. Never throws. */
export async function handleConnection(conn: Deno.TcpConn, ctx: ServerContext): Promise<void> {
  await new Session(conn, ctx).run();
}

/**
 * The MMP adapter over the job core: frames in, frames out. A job whose request carried an upload
 * id is resumable: when the connection breaks, the session parks it in the core's registry instead
 * of ending it, and a later session (`resume`, `attach`, `cancel`, `ack`) takes it over.
 */
class Session implements JobHolder {
  readonly #conn: Deno.TcpConn;
  readonly #ctx: ServerContext;
  readonly #ip: string;
  readonly #source: GuardedSource;
  readonly #reader: FrameReader;
  readonly #ended = Promise.withResolvers<void>();
  readonly #output: FrameOutput;
  #op: string | undefined;
  #job: ClientJob | undefined;
  #payloadSize = 0;
  #outputSize = 0;
  /** Set once the last frame is out: later client frames are read and ignored. */
  #finished = false;
  /** A resumable job's result went out whole; the client's `ack` releases it. */
  #resultSent = false;
  /** The job was let go of: parked, taken over, or disposed. */
  #letGo = false;
  #parked = false;
  /** Another connection took this session's job over and closed this one. */
  #takenOver = false;

  constructor(conn: Deno.TcpConn, ctx: ServerContext) {
    this.#conn = conn;
    this.#ctx = ctx;
    this.#ip = normalizeIp((conn.remoteAddr as Deno.NetAddr).hostname);
    this.#source = new GuardedSource(conn, {
      idleTimeoutMs: ctx.idleTimeoutMs,
      minBytesPerSecond: ctx.minUploadBytesPerSecond,
      signal: ctx.signal,
    });
    this.#reader = new FrameReader(this.#source);
    this.#output = new FrameOutput(conn, ctx.signal, () => this.#close());
  }

  async run(): Promise<void> {
    const startedAt = performance.now();
    let outcome = "ok";
    try {
      await this.#serve();
    } catch (err) {
      const keep = this.#keeps(err);
      if (this.#takenOver) outcome = "taken over by a new connection";
      else if (this.#isGone(err)) {
        outcome = "client disconnected";
        await this.#release(keep);
      } else outcome = await this.#reportError(err, keep);
    } finally {
      await this.#release(this.#keeps(new ClientGone())); // a job held at a clean end stays
      this.#close();
      this.#ended.resolve();
    }
    if (this.#parked) {
      outcome += `, kept ${this.#ctx.core.resumable.windowMs / 1000} s for the client to come back`;
    }
    if (this.#op === undefined && this.#payloadSize === 0 && outcome === "ok") return;
    if (this.#op === "info" && outcome === "ok") return;
    this.#ctx.log(jobLogLine({
      id: this.#job?.id,
      ip: this.#ip,
      op: this.#job?.request.op ?? this.#op,
      inBytes: this.#payloadSize,
      outBytes: this.#outputSize,
      startedAt,
      outcome,
    }));
  }

  /** {@linkcode JobHolder}: another connection takes the job over; this one closes. */
  detach(): Promise<void> {
    this.#takenOver = true;
    this.#close();
    return this.#ended.promise;
  }

  #isGone(err: unknown): boolean {
    if (err instanceof ClientGone || isDisconnect(err)) return true;
    return this.#job?.uploadId !== undefined && err instanceof TruncatedFrameError;
  }

  /**
   * Whether a resumable job outlives this error: a broken or stalled connection and a bad request
   * frame leave the held bytes as they were; a failed, cancelled or corrupt job does not.
   */
  #keeps(err: unknown): boolean {
    const job = this.#job;
    if (job?.uploadId === undefined || this.#ctx.signal.aborted) return false;
    if (job.state === "failed" || job.state === "cancelled") return false;
    if (this.#takenOver || this.#isGone(err) || err instanceof FrameError) return true;
    if (!(err instanceof MmpError)) return false;
    return [
      "TIMEOUT",
      "BAD_REQUEST",
      "BAD_FRAME",
      "UNKNOWN_UPLOAD",
      "UNKNOWN_JOB",
      "RESUME_MISMATCH",
    ]
      .includes(err.code);
  }

  async #serve(): Promise<void> {
    if (this.#ctx.connections() >= this.#ctx.maxConnections) {
      throw new MmpError("BUSY", "The server has too many open connections right now", {
        solution: "Try again in a minute",
      });
    }
    const resumable = this.#ctx.core.resumable;
    let head = await this.#reader.readFrameHead();
    while (head !== null && resumable.enabled && head.json.op === "resume") {
      await this.#answerResume(head);
      head = await this.#reader.readFrameHead();
    }
    if (head === null) return;
    this.#payloadSize = head.header.payloadSize;
    const op = head.json.op;
    if (op === "info") return await this.#answerInfo(head);
    if (resumable.enabled && op === "attach") return await this.#attach(head);
    if (resumable.enabled && (op === "cancel" || op === "ack")) return await this.#endById(head);
    const { job, offset } = await this.#admit(head);
    const payloadSize = head.header.payloadSize;
    await job.receive((sink) => this.#reader.copyPayload(payloadSize, sink), offset);
    this.#source.disarm();
    await this.#output.send({
      type: "accepted",
      job: job.id,
      queue_position: job.status().queue_position,
    });
    await this.#follow(job, 0);
  }

  /**
   * A request frame: a new job, or (with `upload` and `offset`) the rest of a held upload, which
   * must repeat the request that began it. Everything is checked before the payload is read.
   */
  async #admit(head: FrameHead): Promise<{ job: ClientJob; offset: number }> {
    const core = this.#ctx.core;
    const { upload, offset: rawOffset, ...args } = head.json;
    const submission = { ip: this.#ip, mediaType: head.mediaType, idBytes: 8 };
    if (!core.resumable.enabled || (upload === undefined && rawOffset === undefined)) {
      const job = this.#job = await core.admit({
        ...submission,
        args: head.json,
        size: head.header.payloadSize,
      });
      return { job, offset: 0 };
    }
    const uploadId = uploadIdOf(upload);
    const offset = offsetOf(rawOffset);
    const sha256 = typeof args.sha256 === "string" ? args.sha256.toLowerCase() : undefined;
    if (sha256 === undefined) {
      throw new MmpError("BAD_REQUEST", "A resumable upload must carry the file's sha256", {
        solution: "Send the SHA-256 of the whole file in the sha256 field",
      });
    }
    const size = offset + head.header.payloadSize;
    const held = core.resumable.findUpload(this.#ip, uploadId);
    if (!held) {
      if (offset > 0) throw unknownUpload();
      const job = this.#job = await core.admit({ ...submission, args, size, uploadId });
      core.resumable.add(job, this);
      return { job, offset };
    }
    await this.#take(held, unknownUpload);
    if (held.accepted) {
      throw resumeMismatch(
        `This upload is complete: it became job ${held.id}`,
        `Attach to it: {"op":"attach","job":"${held.id}"} (mmp attach ${held.id})`,
      );
    }
    if (size !== held.size) {
      throw resumeMismatch(`The upload has ${held.size} bytes; this request announces ${size}`);
    }
    if (sha256 !== held.request.sha256) {
      throw resumeMismatch("The sha256 differs from the one the upload began with");
    }
    if (requestSignature(args, head.mediaType) !== held.signature) {
      throw resumeMismatch("The request differs from the one the upload began with");
    }
    if (offset > held.received) {
      throw resumeMismatch(
        `Offset ${offset} is beyond the ${held.received} bytes the server holds`,
      );
    }
    return { job: held, offset };
  }

  /** Takes a resumable job over for this session, or throws `unknown()`. */
  async #take(job: ClientJob, unknown: () => MmpError): Promise<void> {
    if (this.#job !== undefined && this.#job !== job) {
      throw new MmpError("BAD_REQUEST", "This connection serves another job already");
    }
    if (!(await this.#ctx.core.resumable.take(job, this))) throw unknown();
    this.#job = job;
  }

  /** `{"op":"resume","upload":ID}`: how many bytes of the upload the server holds. */
  async #answerResume(head: FrameHead): Promise<void> {
    this.#op = "resume";
    noPayload(head, "A resume");
    onlyKeys(head.json, ["op", "upload"]);
    const uploadId = uploadIdOf(head.json.upload);
    const job = this.#ctx.core.resumable.findUpload(this.#ip, uploadId);
    if (!job) throw unknownUpload();
    await this.#take(job, unknownUpload);
    await this.#output.send({
      type: "resume",
      upload: uploadId,
      offset: job.received,
      size: job.size,
      ...(job.accepted && { job: job.id }),
    });
  }

  /** `{"op":"attach","job":ID,"offset"?:N}`: the job's status again, then its result from N. */
  async #attach(head: FrameHead): Promise<void> {
    this.#op = "attach";
    noPayload(head, "An attach");
    onlyKeys(head.json, ["op", "job", "offset"]);
    const jobId = jobIdOf(head.json.job);
    const offset = offsetOf(head.json.offset);
    const job = this.#ctx.core.resumable.findJob(this.#ip, jobId);
    if (!job) throw unknownJob();
    await this.#take(job, unknownJob);
    this.#source.disarm();
    if (job.state === "failed" || job.state === "cancelled") throw job.error;
    if (job.state !== "done") await this.#output.send(this.#statusOf(job));
    await this.#follow(job, offset);
  }

  /** `{"op":"cancel"|"ack","job"|"upload":ID}` on a connection of its own. */
  async #endById(head: FrameHead): Promise<void> {
    const op = this.#op = String(head.json.op);
    noPayload(head, `A ${op}`);
    const registry = this.#ctx.core.resumable;
    let job: ClientJob | undefined;
    let unknown = unknownJob;
    if (head.json.job !== undefined || op === "ack") {
      onlyKeys(head.json, ["op", "job"]);
      job = registry.findJob(this.#ip, jobIdOf(head.json.job));
    } else {
      onlyKeys(head.json, ["op", "upload"]);
      unknown = unknownUpload;
      job = registry.findUpload(this.#ip, uploadIdOf(head.json.upload));
    }
    if (!job) throw unknown();
    await this.#take(job, unknown);
    if (op === "cancel") {
      job.cancel();
      throw new MmpError("CANCELLED", "The job was cancelled as you asked");
    }
    if (job.state !== "done") {
      throw new MmpError("BAD_REQUEST", "The job has no result yet to acknowledge", {
        solution: `Attach to it to wait for its result: {"op":"attach","job":"${job.id}"}`,
      });
    }
    await this.#release(false);
    this.#finished = true;
    await this.#output.send({ type: "ack", job: job.id });
    await this.#output.linger();
  }

  /** `{"op":"info"}`: no IP slot, no quota; one JSON frame, then the exchange ends. */
  async #answerInfo(head: FrameHead): Promise<void> {
    this.#op = "info";
    noPayload(head, "An info");
    onlyKeys(head.json, ["op"]);
    const info = await this.#ctx.core.info();
    this.#finished = true;
    await this.#output.send(info);
    await this.#output.linger();
  }

  /**
   * Answers status and cancel frames until the job ends, pushes the result (from `offset`), and
   * for a resumable job waits for the client's `ack` before the result is deleted.
   */
  async #follow(job: ClientJob, offset: number): Promise<void> {
    const acked = Promise.withResolvers<void>();
    const control = this.#answerControlFrames(job, acked.resolve);
    control.catch(() => {});
    const output = await Promise.race([job.done, control]);
    this.#outputSize = output.size;
    await this.#sendResult(job, offset);
    if (job.uploadId === undefined) return;
    await Promise.race([acked.promise, control]);
    await this.#release(false);
    await this.#output.send({ type: "ack", job: job.id });
    await this.#output.linger();
  }

  async #answerControlFrames(job: ClientJob, onAck: () => void): Promise<never> {
    while (true) {
      const head = await this.#reader.readFrameHead();
      if (head === null) throw new ClientGone();
      if (head.header.payloadSize !== 0) {
        throw new MmpError("BAD_FRAME", "A status or cancel frame must not carry a payload");
      }
      if (head.json.op === "ack" && this.#resultSent) {
        onAck();
        continue;
      }
      if (this.#finished) continue;
      if (head.json.op === "status") await this.#output.send(this.#statusOf(job));
      else if (head.json.op === "cancel") job.cancel();
      else {
        throw new MmpError(
          "BAD_REQUEST",
          'While a job runs, only {"op":"status"} and {"op":"cancel"} are accepted',
        );
      }
    }
  }
  #statusOf(job: ClientJob): Record<string, unknown> {
    const status = job.status();
    return {
      type: "status",
      job: job.id,
      // MMP knows two states while it waits; the result frame says "done".
      state: status.state === "queued" ? "queued" : "running",
      progress: status.progress,
      queue_position: status.queue_position,
    };
  }

  async #sendResult(job: ClientJob, offset: number): Promise<void> {
    const result = job.describeResult()!;
    const output = job.output!;
    const resumable = job.uploadId !== undefined;
    if (offset > output.size) {
      throw resumeMismatch(`Offset ${offset} is beyond the result's ${output.size} bytes`);
    }
    const json = {
      type: "result",
      job: job.id,
      name: result.name,
      sha256: result.sha256,
      ...(resumable && { size: output.size, offset }),
      stats: result.stats,
    };
    this.#finished = true;
    try {
      await this.#output.sendFile(json, output.format, output.path, offset);
    } catch {
      throw new ClientGone(); // mid-payload: an error frame now would corrupt the stream
    }
    if (resumable) {
      this.#resultSent = true;
      return;
    }
    await this.#release(false);
    await this.#output.linger();
  }

  /** Sends the error frame (unless the client is gone) and returns the code for the log. */
  async #reportError(err: unknown, keep: boolean): Promise<string> {
    const { frame, detail } = toErrorReport(err);
    if (detail) this.#ctx.log(`error detail (${this.#ip}): ${detail}`);
    this.#finished = true;
    await this.#release(keep);
    try {
      await this.#output.send(frame);
      await this.#output.linger();
    } catch { /* the client went away first */ }
    return frame.code;
  }
  /**
   * Lets go of the job once: a resumable one is parked when `keep` (or left alone when another
   * connection took it over); otherwise it ends and frees everything it held: ffmpeg, files, quota,
   * the IP's slot.
   */
  async #release(keep: boolean): Promise<void> {
    const job = this.#job;
    if (!job || this.#letGo) return;
    this.#letGo = true;
    if (job.uploadId !== undefined) {
      const ctx = this.#ctx;
      const onExpire = () => {
        ctx.log(jobLogLine({
          id: job.accepted ? job.id : undefined,
          ip: job.ip,
          op: job.request.op,
          inBytes: job.received,
          outBytes: job.output?.size ?? 0,
          startedAt: job.startedAt,
          outcome: "expired: nobody came back within the resume window",
        }));
        job.dispose(new MmpError("TIMEOUT", "The resume window ended")).catch(() => {});
      };
      const kept = keep && !ctx.signal.aborted;
      if (ctx.core.resumable.release(job, this, kept, onExpire)) {
        this.#parked = kept && !this.#takenOver;
        return;
      }
    }
    await job.dispose(new ClientGone());
  }

  #close(): void {
    this.#source[Symbol.dispose]();
    try {
      this.#conn.close();
    } catch { /* closed already */ }
  }
}
