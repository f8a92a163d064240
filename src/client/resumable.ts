/**
 * The resumable client: an upload with an id, a job that outlives its connection, a result that
 * downloads from where it stopped. When the connection breaks, the client reconnects (with
 * backoff) and goes on from what the server holds. See docs/protocol.md, "Resuming".
 *
 * @module
 */
import { basename, extname } from "node:path";
import { type FrameHead, FrameReader } from "../protocol/frame_reader.ts";
import { writeFileFrame, writeFrame } from "../protocol/frame_writer.ts";
import {
  type ClientEvent,
  ConnectionError,
  delay,
  DetachedError,
  type JobPhase,
  type JobResult,
  num,
  randomHex,
  ServerError,
  str,
  throwIfError,
  uploadWatchingAnswer,
} from "./common.ts";
import { completeDownload, type Download, downloadFor, receivePayload } from "./result_download.ts";
import { type ClientConn, closeQuietly, type ConnectOptions, connectTo } from "./socket.ts";

/** What a resumable run needs besides the job's own state. */
export interface ResumableOptions extends ConnectOptions {
  /** The operation and its arguments (for a new upload). */
  request?: Record<string, unknown>;
  /** The file to upload, its size and SHA-256 (for a new upload). */
  input?: { path: string; size: number; sha256: string; mediaType: string };
  /** The output path for a result of `mediaType` named `name` by the server. */
  outputFor: (mediaType: string, name: string) => string;
  force?: boolean;
  pollMs: number;
  /** Reconnects after a break without progress before giving up. */
  retries: number;
  /** The first reconnect waits this long, each next one twice as long (at most 10 s). */
  retryDelayMs: number;
  onEvent?: (event: ClientEvent) => void;
  /** Aborting cancels the upload, or `detach`es from (or `cancel`s) an accepted job. */
  signal?: AbortSignal;
  onAbort: "cancel" | "detach";
}

/** Where a resumable job stands on the client's side. */
export interface RunState {
  phase: JobPhase | "ack" | "done";
  uploadId: string;
  /** After a break: ask the server how much of the upload it holds before sending. */
  askOffset: boolean;
  job?: string;
  download?: Download | undefined;
  result?: JobResult;
  /** Grows with every byte moved and every step taken: a reconnect that moved on resets the count. */
  moved: number;
}

/** The server forgot the upload (restart, expiry): send it whole, on a new connection. */
class StartOver extends Error {}

/** The server forgot an accepted job (a restart, a dead node): the run fails as a broken connection. */
class JobLost extends ConnectionError {}

/** Errors that end the run at once; anything else is a broken connection worth a reconnect. */
function isFinal(err: unknown, state: RunState): boolean {
  if (err instanceof ServerError) {
    // A stalled upload is parked by the server; a stopping server may come back.
    if (err.code === "SHUTTING_DOWN") return false;
    return !(err.code === "TIMEOUT" && state.phase === "upload");
  }
  return err instanceof DetachedError || err instanceof JobLost ||
    err instanceof Deno.errors.AlreadyExists;
}

/**
 * Runs a job to its verified result, reconnecting when the connection breaks and resuming the
 * upload, the wait or the download where it stood.
 */
export async function runResumable(options: ResumableOptions, state: RunState): Promise<JobResult> {
  let failures = 0;
  let connected = false;
  try {
    while (true) {
      const mark = state.moved;
      let conn: ClientConn | undefined;
      try {
        conn = await connectTo(options);
        connected = true;
        return await new ResumableSession(conn, options, state).run();
      } catch (err) {
        if (options.signal?.aborted) return await aborted(options, state);
        if (err instanceof StartOver) continue;
        if (isFinal(err, state)) throw err;
        if (!connected) {
          throw new ConnectionError(
            `Cannot connect to ${options.hostname}:${options.port}: ${(err as Error).message}`,
          );
        }
        if (state.phase === "done" || (state.phase === "ack" && failures >= 1)) {
          return state.result!; // the result is in place; only the server's receipt is missing
        }
        failures = state.moved > mark ? 1 : failures + 1;
        if (failures > options.retries) {
          throw new ConnectionError(
            `The connection broke ${failures} times without progress: ${(err as Error).message}`,
            { cause: err },
          );
        }
        const delayMs = Math.min(options.retryDelayMs * 2 ** (failures - 1), 10_000);
        options.onEvent?.({
          stage: "reconnect",
          phase: state.phase === "ack" ? "download" : state.phase,
          attempt: failures,
          retries: options.retries,
          delayMs,
          reason: (err as Error).message,
        });
        state.askOffset = true;
        await delay(delayMs, options.signal);
        if (options.signal?.aborted) return await aborted(options, state);
      } finally {
        closeQuietly(conn);
      }
    }
  } finally {
    if (state.download) await Deno.remove(state.download.partial).catch(() => {});
  }
}

/** Ctrl-C: an upload is cancelled on the server; an accepted job is detached (or cancelled). */
async function aborted(options: ResumableOptions, state: RunState): Promise<never> {
  if (state.phase === "upload") {
    await sendOnce(options, { op: "cancel", upload: state.uploadId }).catch(() => {});
    throw new ServerError("CANCELLED", "The upload was cancelled as you asked", "Nothing to do");
  }
  if (options.onAbort === "detach" || state.phase === "ack" || state.phase === "done") {
    throw new DetachedError(state.job!);
  }
  await sendOnce(options, { op: "cancel", job: state.job! }).catch(() => {});
  throw new ServerError("CANCELLED", "The job was cancelled as you asked", "Nothing to do");
}

/** Sends one control frame on a connection of its own and returns the answer (or its error). */
export async function sendOnce(
  options: ConnectOptions,
  json: Record<string, unknown>,
  timeoutMs = 3000,
): Promise<FrameHead> {
  const conn = await connectTo(options);
  const timer = setTimeout(() => closeQuietly(conn), timeoutMs);
  try {
    await writeFrame(conn, json);
    const head = await new FrameReader(conn).readFrameHead();
    if (head === null) throw new ConnectionError("The server closed the connection");
    throwIfError(head);
    return head;
  } finally {
    clearTimeout(timer);
    closeQuietly(conn);
  }
}

/** One connection's share of a resumable run. */
class ResumableSession {
  readonly #conn: ClientConn;
  readonly #options: ResumableOptions;
  readonly #state: RunState;
  readonly #reader: FrameReader;

  constructor(conn: ClientConn, options: ResumableOptions, state: RunState) {
    this.#conn = conn;
    this.#options = options;
    this.#state = state;
    this.#reader = new FrameReader(conn);
  }

  async run(): Promise<JobResult> {
    const state = this.#state;
    const abort = () => closeQuietly(this.#conn);
    this.#options.signal?.addEventListener("abort", abort, { once: true });
    try {
      if (state.phase === "upload") {
        const offset = state.askOffset ? await this.#askOffset() : 0;
        if (state.phase === "upload") {
          const accepted = await this.#upload(offset);
          state.job = str(accepted.json.job);
          state.phase = "wait";
          state.moved++;
          this.#emit({
            stage: "accepted",
            job: state.job,
            queuePosition: num(accepted.json.queue_position),
          });
          return await this.#download(await this.#wait());
        }
      }
      if (state.phase === "wait" || state.phase === "download") {
        return await this.#download(await this.#attach());
      }
      return await this.#acknowledge({ op: "ack", job: state.job });
    } finally {
      this.#options.signal?.removeEventListener("abort", abort);
    }
  }

  #emit(event: ClientEvent): void {
    this.#options.onEvent?.(event);
  }

  async #next(): Promise<FrameHead> {
    const head = await this.#reader.readFrameHead();
    if (head === null) {
      throw new ConnectionError("The server closed the connection without an answer");
    }
    throwIfError(head);
    return head;
  }

  /** `resume`: how much of the upload the server holds (or which job it became). */
  async #askOffset(): Promise<number> {
    const state = this.#state;
    const total = this.#options.input!.size;
    await writeFrame(this.#conn, { op: "resume", upload: state.uploadId });
    let head: FrameHead;
    try {
      head = await this.#next();
    } catch (err) {
      if (!(err instanceof ServerError && err.code === "UNKNOWN_UPLOAD")) throw err;
      state.askOffset = false;
      this.#emit({ stage: "resume", phase: "upload", offset: 0, total });
      throw new StartOver();
    }
    if (head.json.type !== "resume") {
      throw new ConnectionError("The server sent an unexpected frame");
    }
    const job = str(head.json.job);
    if (job) {
      state.job = job;
      state.phase = "wait";
      state.moved++;
      return total;
    }
    const offset = num(head.json.offset);
    this.#emit({ stage: "resume", phase: "upload", offset, total });
    return offset;
  }

  /** Sends the request and the file from `offset`, watching for an early answer. */
  async #upload(offset: number): Promise<FrameHead> {
    const { request, input } = this.#options;
    const state = this.#state;
    const json = {
      ...request,
      sha256: input!.sha256,
      name: basename(input!.path),
      upload: state.uploadId,
      ...(offset > 0 && { offset }),
    };
    return await uploadWatchingAnswer(
      this.#next(),
      (signal) =>
        writeFileFrame(this.#conn, json, input!.mediaType, input!.path, {
          offset,
          signal,
          onProgress: (sent) => {
            state.moved++;
            this.#emit({ stage: "upload", sent, total: input!.size });
          },
        }),
    );
  }

  /** `attach`: back on the job; its status comes first unless the result is ready. */
  async #attach(): Promise<FrameHead> {
    const state = this.#state;
    const offset = state.download?.received ?? 0;
    await writeFrame(this.#conn, { op: "attach", job: state.job, ...(offset > 0 && { offset }) });
    try {
      const head = await this.#next();
      const total = state.download?.total ?? 0;
      this.#emit({ stage: "resume", phase: state.phase as JobPhase, offset, total });
      if (head.json.type === "result") return head;
      this.#onStatus(head);
      return await this.#wait();
    } catch (err) {
      if (!(err instanceof ServerError && err.code === "UNKNOWN_JOB")) throw err;
      if (!this.#options.input) throw err; // `mmp attach`: the server's own answer says it all
      throw new JobLost(
        `The server no longer has job ${state.job} (it restarted, or its node went down): ` +
          "send the file again",
      );
    }
  }

  #onStatus(head: FrameHead): void {
    if (head.json.type !== "status") return;
    this.#emit({
      stage: "status",
      state: str(head.json.state),
      progress: num(head.json.progress),
      queuePosition: num(head.json.queue_position),
    });
  }

  /** Polls status until the result frame arrives. */
  async #wait(): Promise<FrameHead> {
    const poll = () => writeFrame(this.#conn, { op: "status" }).catch(() => {});
    const timer = setInterval(poll, this.#options.pollMs);
    try {
      while (true) {
        const head = await this.#next();
        if (head.json.type === "result") return head;
        this.#onStatus(head);
      }
    } finally {
      clearInterval(timer);
    }
  }

  /** Streams the result (or its rest) into the kept partial file, verifies it, acknowledges it. */
  async #download(head: FrameHead): Promise<JobResult> {
    const state = this.#state;
    const download = await downloadFor(head, state.download, this.#options.outputFor);
    state.download = download;
    state.phase = "download";
    state.moved++;
    await receivePayload(download, this.#reader, head, () => {
      state.moved++;
      this.#emit({ stage: "download", received: download.received, total: download.total });
    });
    state.download = undefined;
    await completeDownload(download, this.#options.force);
    state.result = {
      job: state.job!,
      output: download.output,
      name: str(download.json.name),
      mediaType: download.mediaType,
      size: download.total,
      sha256: download.sha256,
      stats: (download.json.stats ?? {}) as Record<string, unknown>,
    };
    state.phase = "ack";
    return await this.#acknowledge({ op: "ack" });
  }

  /** Tells the server the result arrived, so it deletes it; its receipt ends the run. */
  async #acknowledge(json: Record<string, unknown>): Promise<JobResult> {
    const state = this.#state;
    await writeFrame(this.#conn, json);
    try {
      await this.#next();
    } catch (err) {
      if (!(err instanceof ServerError && err.code === "UNKNOWN_JOB")) throw err;
    }
    state.phase = "done";
    return state.result!;
  }
}

/** A new upload id: 128 random bits as 32 hex digits. */
export function newUploadId(): string {
  return randomHex(16);
}

/** The media type sent for `path`: its extension. */
export function mediaTypeOf(path: string): string {
  return extname(path).slice(1).toLowerCase();
}
