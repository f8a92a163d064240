import { MmpError } from "../protocol/errors.ts";
import { sha256Stream } from "../protocol/checksum.ts";
import { FrameReader } from "../protocol/frame_reader.ts";
import { writeAll, writeFileFrame, writeFrame } from "../protocol/frame_writer.ts";
import { normalizeMediaType } from "../protocol/media_type.ts";
import { formatBytes } from "../cli/units.ts";
import { Job, type JobQueue } from "../jobs/queue.ts";
import type { Tools } from "../media/ffmpeg.ts";
import { type JobRequest, parseJobRequest } from "../media/operations.ts";
import { toErrorReport } from "./error_frame.ts";
import { GuardedSource } from "./guarded_source.ts";
import { type MediaLimits, type ProcessedOutput, processUpload } from "./process.ts";
import type { JobFiles, Reservation, Storage } from "./storage.ts";

/** What every connection shares with the server. */
export interface ServerContext {
  storage: Storage;
  queue: JobQueue;
  tools: Tools;
  /** Client IPs that hold the one job each is allowed. */
  busyIps: Set<string>;
  idleTimeoutMs: number;
  /** Uploads slower than this (bytes per second, over each idle-timeout window) are cut off. */
  minUploadBytesPerSecond: number;
  limits: MediaLimits;
  /** Connections already open (checked before this one counts), and the most allowed. */
  connections: () => number;
  maxConnections: number;
  /** Aborted with a `SHUTTING_DOWN` error when the server stops. */
  signal: AbortSignal;
  log: (line: string) => void;
}

/** Room reserved for a job's output besides its input: as large as the input, at least 64 MiB. */
export function outputAllowance(payloadSize: number): number {
  return Math.max(payloadSize, 64 * 2 ** 20);
}

/** How long the server keeps reading (and discarding) after its last frame, so it arrives. */
const LINGER_MS = 2000;

/** The client left; nothing can be sent to it. */
class ClientGone extends Error {
  constructor() {
    super("Client disconnected");
  }
}

function newJobId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** IPv4 clients of a dual-stack listener show up as `::ffff:a.b.c.d`; one client, one key. */
function clientIp(conn: Deno.Conn): string {
  const addr = conn.remoteAddr as Deno.NetAddr;
  return addr.hostname.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, "");
}

function isDisconnect(err: unknown): boolean {
  return err instanceof Deno.errors.ConnectionReset || err instanceof Deno.errors.BrokenPipe ||
    err instanceof Deno.errors.ConnectionAborted;
}

/** Serves one connection, which carries one job, to its end. Never throws. */
export async function handleConnection(conn: Deno.TcpConn, ctx: ServerContext): Promise<void> {
  await new Session(conn, ctx).run();
}

class Session {
  readonly #conn: Deno.TcpConn;
  readonly #ctx: ServerContext;
  readonly #ip: string;
  readonly #source: GuardedSource;
  readonly #reader: FrameReader;
  #writes: Promise<void> = Promise.resolve();
  #holdsIp = false;
  #request?: JobRequest;
  #reservation?: Reservation;
  #files?: JobFiles;
  #job?: Job<ProcessedOutput>;
  #payloadSize = 0;
  #outputSize = 0;
  /** Set once the last frame is out: later client frames are read and ignored. */
  #finished = false;

  constructor(conn: Deno.TcpConn, ctx: ServerContext) {
    this.#conn = conn;
    this.#ctx = ctx;
    this.#ip = clientIp(conn);
    this.#source = new GuardedSource(conn, {
      idleTimeoutMs: ctx.idleTimeoutMs,
      minBytesPerSecond: ctx.minUploadBytesPerSecond,
      signal: ctx.signal,
    });
    this.#reader = new FrameReader(this.#source);
  }

  async run(): Promise<void> {
    const started = performance.now();
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
    if (!this.#request && this.#payloadSize === 0 && outcome === "ok") return;
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    this.#ctx.log(
      `job ${this.#job?.id ?? "-"} ${this.#ip} ${this.#request?.op ?? "-"} ` +
        `in=${formatBytes(this.#payloadSize)} out=${
          formatBytes(this.#outputSize)
        } ${seconds}s ${outcome}`,
    );
  }

  async #serve(): Promise<void> {
    if (this.#ctx.connections() >= this.#ctx.maxConnections) {
      throw new MmpError("BUSY", "The server has too many open connections right now", {
        solution: "Try again in a minute",
      });
    }
    const header = await this.#reader.readHeader();
    if (header === null) return;
    this.#claimIp();
    this.#payloadSize = header.payloadSize;
    const json = await this.#reader.readJson(header.jsonSize);
    const mediaType = await this.#reader.readMediaType(header.mediaSize);
    const request = this.#request = parseJobRequest(json);
    const extension = normalizeMediaType(mediaType);
    if (header.payloadSize === 0) {
      throw new MmpError("BAD_REQUEST", "The upload is empty", {
        solution: "Send the file's bytes as the frame's payload",
      });
    }
    this.#reservation = await this.#ctx.storage.reserve(
      header.payloadSize + outputAllowance(header.payloadSize),
    );
    const id = newJobId();
    const files = this.#files = this.#ctx.storage.jobFiles(id);
    const input = await this.#receiveUpload(files, extension, header.payloadSize, request.sha256);
    this.#source.disarm();
    const job = this.#job = new Job(id, (signal, onProgress) =>
      processUpload({
        input,
        inputExtension: extension,
        plan: request.plan,
        files,
        tools: this.#ctx.tools,
        signal,
        maxOutputBytes: outputAllowance(header.payloadSize),
        onProgress,
        limits: this.#ctx.limits,
      }));
    this.#ctx.queue.submit(job);
    await this.#send({ type: "accepted", job: id, queue_position: this.#ctx.queue.position(job) });
    const output = await this.#waitForJob(job);
    this.#outputSize = output.size;
    await this.#sendResult(job, output);
  }

  #claimIp(): void {
    if (this.#ctx.busyIps.has(this.#ip)) {
      throw new MmpError("BUSY", "A job from your address is already in progress on this server");
    }
    this.#ctx.busyIps.add(this.#ip);
    this.#holdsIp = true;
  }

  /** Streams the payload to a temporary name; it gets the input name only when complete and verified. */
  async #receiveUpload(
    files: JobFiles,
    extension: string,
    size: number,
    expectedSha256: string | undefined,
  ): Promise<string> {
    const partial = files.path("upload.part");
    const hash = expectedSha256 ? sha256Stream() : undefined;
    {
      using file = await Deno.open(partial, { write: true, createNew: true });
      await this.#reader.copyPayload(size, async (chunk) => {
        hash?.update(chunk);
        await writeAll(file, chunk);
      });
    }
    const actual = hash?.digest("hex");
    if (actual !== undefined && actual !== expectedSha256) {
      throw new MmpError(
        "CHECKSUM_MISMATCH",
        "The uploaded file does not match the sha256 sent with it",
      );
    }
    const input = files.path(`input.${extension}`);
    await Deno.rename(partial, input);
    return input;
  }

  /** Answers status and cancel frames until the job ends; the result is pushed at once. */
  async #waitForJob(job: Job<ProcessedOutput>): Promise<ProcessedOutput> {
    const control = this.#answerControlFrames(job);
    control.catch(() => {});
    return await Promise.race([job.done, control]);
  }

  async #answerControlFrames(job: Job<ProcessedOutput>): Promise<never> {
    while (true) {
      const head = await this.#reader.readFrameHead();
      if (head === null) throw new ClientGone();
      if (head.header.payloadSize !== 0) {
        throw new MmpError("BAD_FRAME", "A status or cancel frame must not carry a payload");
      }
      if (this.#finished) continue;
      if (head.json.op === "status") await this.#send(this.#statusOf(job));
      else if (head.json.op === "cancel") {
        this.#ctx.queue.cancel(
          job,
          new MmpError("CANCELLED", "The job was cancelled as you asked"),
        );
      } else {
        throw new MmpError(
          "BAD_REQUEST",
          'While a job runs, only {"op":"status"} and {"op":"cancel"} are accepted',
        );
      }
    }
  }

  #statusOf(job: Job<ProcessedOutput>): Record<string, unknown> {
    const position = this.#ctx.queue.position(job);
    return {
      type: "status",
      job: job.id,
      state: position > 0 ? "queued" : "running",
      progress: Math.round(job.progress * 1000) / 1000,
      queue_position: position,
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

  async #sendResult(job: Job<ProcessedOutput>, output: ProcessedOutput): Promise<void> {
    const json = {
      type: "result",
      job: job.id,
      name: `${this.#request!.baseName}.${output.format}`,
      sha256: output.sha256,
      stats: { ...output.stats, input_bytes: this.#payloadSize, output_bytes: output.size },
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
    }
  }

  /** Ends the job and frees everything it held: ffmpeg, files, quota, the IP's slot. Idempotent. */
  async #releaseJob(): Promise<void> {
    if (this.#job && this.#job.state !== "finished") {
      this.#ctx.queue.cancel(this.#job, new ClientGone());
    }
    await this.#job?.done.catch(() => {});
    await this.#files?.[Symbol.asyncDispose]();
    this.#reservation?.[Symbol.dispose]();
    if (this.#holdsIp) this.#ctx.busyIps.delete(this.#ip);
    this.#holdsIp = false;
  }

  #close(): void {
    this.#source[Symbol.dispose]();
    try {
      this.#conn.close();
    } catch { /* closed already */ }
  }
}
