import { MmpError } from "../protocol/errors.ts";
import { type FrameHead, FrameReader } from "../protocol/frame_reader.ts";
import { writeFileFrame, writeFrame } from "../protocol/frame_writer.ts";
import { ClientGone, type ClientJob } from "../jobs/client_job.ts";
import { type JobCore, jobLogLine } from "../jobs/core.ts";
import { toErrorReport } from "../jobs/error_report.ts";
import { normalizeIp } from "../jobs/ip_slots.ts";
import type { ProcessedOutput } from "../jobs/process.ts";
import { GuardedSource } from "../jobs/guarded_source.ts";

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

/** How long the server keeps reading (and discarding) after its last frame, so it arrives. */
const LINGER_MS = 2000;

function isDisconnect(err: unknown): boolean {
  return err instanceof Deno.errors.ConnectionReset || err instanceof Deno.errors.BrokenPipe ||
    err instanceof Deno.errors.ConnectionAborted;
}

/** Serves one connection, which carries one job (or one `info` answer), to its end. Never throws. */
export async function handleConnection(conn: Deno.TcpConn, ctx: ServerContext): Promise<void> {
  await new Session(conn, ctx).run();
}

/** The MMP adapter over the job core: frames in, frames out. */
class Session {
  readonly #conn: Deno.TcpConn;
  readonly #ctx: ServerContext;
  readonly #ip: string;
  readonly #source: GuardedSource;
  readonly #reader: FrameReader;
  #writes: Promise<void> = Promise.resolve();
  #op: string | undefined;
  #job: ClientJob | undefined;
  #payloadSize = 0;
  #outputSize = 0;
  /** Set once the last frame is out: later client frames are read and ignored. */
  #finished = false;

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
  }

  async run(): Promise<void> {
    const startedAt = performance.now();
    let outcome = "ok";
    try {
      await this.#serve();
    } catch (err) {
      if (err instanceof ClientGone || isDisconnect(err)) outcome = "client disconnected";
      else outcome = await this.#reportError(err);
    } finally {
      await this.#releaseJob();
      this.#close();
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

  async #serve(): Promise<void> {
    if (this.#ctx.connections() >= this.#ctx.maxConnections) {
      throw new MmpError("BUSY", "The server has too many open connections right now", {
        solution: "Try again in a minute",
      });
    }
    const head = await this.#reader.readFrameHead();
    if (head === null) return;
    this.#payloadSize = head.header.payloadSize;
    if (head.json.op === "info") return await this.#answerInfo(head);
    const job = this.#job = await this.#ctx.core.admit({
      ip: this.#ip,
      args: head.json,
      mediaType: head.mediaType,
      size: head.header.payloadSize,
      idBytes: 8, // docs/protocol.md: MMP job IDs are 16 hex digits
    });
    await job.receive((sink) => this.#reader.copyPayload(job.size, sink));
    this.#source.disarm();
    await this.#send({
      type: "accepted",
      job: job.id,
      queue_position: job.status().queue_position,
    });
    const output = await this.#waitForJob(job);
    this.#outputSize = output.size;
    await this.#sendResult(job);
  }

  /** `{"op":"info"}`: no IP slot, no quota; one JSON frame, then the exchange ends. */
  async #answerInfo(head: FrameHead): Promise<void> {
    this.#op = "info";
    if (head.header.payloadSize !== 0 || head.header.mediaSize !== 0) {
      throw new MmpError("BAD_FRAME", "An info frame must carry no media type and no payload");
    }
    const extra = Object.keys(head.json).find((key) => key !== "op");
    if (extra !== undefined) {
      throw new MmpError("BAD_REQUEST", `Unknown argument for info: ${extra.slice(0, 40)}`, {
        solution: 'Send {"op":"info"} alone',
      });
    }
    const info = await this.#ctx.core.info();
    this.#finished = true;
    await this.#send(info);
    await this.#linger();
  }

  /** Answers status and cancel frames until the job ends; the result is pushed at once. */
  async #waitForJob(job: ClientJob): Promise<ProcessedOutput> {
    const control = this.#answerControlFrames(job);
    control.catch(() => {});
    return await Promise.race([job.done, control]);
  }

  async #answerControlFrames(job: ClientJob): Promise<never> {
    while (true) {
      const head = await this.#reader.readFrameHead();
      if (head === null) throw new ClientGone();
      if (head.header.payloadSize !== 0) {
        throw new MmpError("BAD_FRAME", "A status or cancel frame must not carry a payload");
      }
      if (this.#finished) continue;
      if (head.json.op === "status") await this.#send(this.#statusOf(job));
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

  /** Runs `write` after every write queued before it, so frames never interleave. */
  #queueWrite(write: () => Promise<void>): Promise<void> {
    const done = this.#writes.then(write);
    this.#writes = done.catch(() => {});
    return done;
  }

  #send(json: Record<string, unknown>): Promise<void> {
    return this.#queueWrite(() => writeFrame(this.#conn, json));
  }

  async #sendResult(job: ClientJob): Promise<void> {
    const result = job.describeResult()!;
    const output = job.output!;
    const json = {
      type: "result",
      job: job.id,
      name: result.name,
      sha256: result.sha256,
      stats: result.stats,
    };
    this.#finished = true;
    try {
      await this.#queueWrite(() => writeFileFrame(this.#conn, json, output.format, output.path));
    } catch {
      throw new ClientGone(); // mid-payload: an error frame now would corrupt the stream
    }
    await this.#releaseJob();
    await this.#linger();
  }

  /** Sends the error frame (unless the client is gone) and returns the code for the log. */
  async #reportError(err: unknown): Promise<string> {
    const { frame, detail } = toErrorReport(err);
    if (detail) this.#ctx.log(`error detail (${this.#ip}): ${detail}`);
    this.#finished = true;
    await this.#releaseJob();
    try {
      await this.#send(frame);
      await this.#linger();
    } catch { /* the client went away first */ }
    return frame.code;
  }

  /**
   * Half-closes and discards what the client still sends for a moment. Closing with unread bytes
   * would send a TCP reset, which can destroy the last frame before the client reads it.
   */
  async #linger(): Promise<void> {
    this.#conn.closeWrite();
    const deadline = performance.now() + LINGER_MS;
    const stop = () => this.#close();
    const timer = setTimeout(stop, LINGER_MS);
    this.#ctx.signal.addEventListener("abort", stop, { once: true });
    try {
      while (performance.now() < deadline) {
        if ((await this.#conn.read(new Uint8Array(65536))) === null) break;
      }
    } catch {
      /* closed by the timer or reset by the client */
    } finally {
      clearTimeout(timer);
      this.#ctx.signal.removeEventListener("abort", stop);
    }
  }

  /** Ends the job and frees everything it held: ffmpeg, files, quota, the IP's slot. Idempotent. */
  async #releaseJob(): Promise<void> {
    await this.#job?.dispose(new ClientGone());
  }

  #close(): void {
    this.#source[Symbol.dispose]();
    try {
      this.#conn.close();
    } catch { /* closed already */ }
  }
}
