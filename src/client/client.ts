import { basename, join } from "node:path";
import { hashFile, sha256Stream } from "../protocol/checksum.ts";
import { type FrameHead, FrameReader } from "../protocol/frame_reader.ts";
import { writeAll, writeFileFrame, writeFrame } from "../protocol/frame_writer.ts";
import {
  checkOutputFree,
  type ClientEvent,
  ConnectionError,
  type JobResult,
  num,
  outputFor,
  partialPath,
  ServerError,
  str,
  throwIfError,
  uploadWatchingAnswer,
} from "./common.ts";
import { mediaTypeOf, newUploadId, runResumable, sendOnce } from "./resumable.ts";
import { type ClientConn, closeQuietly, type ConnectOptions, connectTo } from "./socket.ts";

export {
  type ClientEvent,
  ConnectionError,
  DetachedError,
  type JobPhase,
  type JobResult,
  ServerError,
} from "./common.ts";

/** Options of {@linkcode runJob}. */
export interface RunJobOptions {
  hostname: string;
  port: number;
  /** Source address to connect from, such as `127.0.0.2`. */
  localAddress?: string;
  /** The operation and its arguments, such as `{ op: "audio" }`. */
  request: Record<string, unknown>;
  /** File to upload. */
  input: string;
  /** Media type to send; default the input's extension. */
  mediaType?: string;
  /** Where the result goes; it appears only when complete and verified. */
  output: string;
  /** Replace an existing output file. */
  force?: boolean;
  /** When the result's format differs from `output`'s extension, swap the extension to match. */
  matchExtension?: boolean;
  /** Status poll interval. Default 60 s. */
  pollMs?: number;
  onEvent?: (event: ClientEvent) => void;
  /** Aborting asks the server to cancel the job (or, with `onAbort: "detach"`, lets go of it). */
  signal?: AbortSignal;
  /**
   * Send a resumable upload (the server must offer the `resume` feature: see
   * {@linkcode serverFeatures}); then a broken connection is resumed up to `retries` times.
   * Default false: one connection, as every MMP server takes it.
   */
  resume?: boolean;
  /** Reconnects after a break without progress before giving up (resumable runs). Default 5. */
  retries?: number;
  /** The first reconnect waits this long, each next one twice as long. Default 500 ms. */
  retryDelayMs?: number;
  /**
   * What aborting `signal` does to an accepted resumable job: `cancel` it (default) or `detach`
   * (it goes on on the server; a {@linkcode DetachedError} names it for {@linkcode attachJob}).
   */
  onAbort?: "cancel" | "detach";
}

/** The output path for a result of `mediaType`. */
function outputPath(options: RunJobOptions, mediaType: string): string {
  return outputFor({ ...options, input: options.input }, mediaType);
}

/**
 * Uploads a file, waits for the job while polling its status, and writes the verified result.
 *
 * @example
 * ```ts
 * const result = await runJob({
 *   hostname: "127.0.0.1", port: 9000, request: { op: "audio" },
 *   input: "talk.mp4", output: "talk.mp3",
 * });
 * ```
 */
export async function runJob(options: RunJobOptions): Promise<JobResult> {
  await checkOutputFree(options.output, options.force);
  const { size } = await Deno.stat(options.input);
  const sha256 = await hashFile(
    options.input,
    (done) => options.onEvent?.({ stage: "hashing", done, total: size }),
  );
  if (options.resume) {
    return await runResumable({
      ...connectOptions(options),
      request: options.request,
      input: {
        path: options.input,
        size,
        sha256,
        mediaType: options.mediaType ?? mediaTypeOf(options.input),
      },
      outputFor: (mediaType) => outputPath(options, mediaType),
      ...sessionOptions(options),
      onAbort: options.onAbort ?? "cancel",
    }, { phase: "upload", uploadId: newUploadId(), askOffset: false, moved: 0 });
  }
  const conn = await connectTo(options).catch((err) => {
    throw new ConnectionError(
      `Cannot connect to ${options.hostname}:${options.port}: ${err.message}`,
    );
  });
  try {
    return await new ClientSession(conn, options).run(sha256, size);
  } catch (err) {
    if (err instanceof ServerError || err instanceof Deno.errors.AlreadyExists) throw err;
    if (err instanceof ConnectionError) throw err;
    throw new ConnectionError(`The connection broke: ${(err as Error).message}`, { cause: err });
  } finally {
    closeQuietly(conn);
  }
}

class ClientSession {
  readonly #conn: ClientConn;
  readonly #options: RunJobOptions;
  readonly #reader: FrameReader;

  constructor(conn: ClientConn, options: RunJobOptions) {
    this.#conn = conn;
    this.#options = options;
    this.#reader = new FrameReader(conn);
  }

  async run(sha256: string, size: number): Promise<JobResult> {
    const accepted = await this.#upload(sha256, size);
    const job = str(accepted.json.job);
    this.#emit({ stage: "accepted", job, queuePosition: num(accepted.json.queue_position) });
    const result = await this.#wait();
    return await this.#download(job, result);
  }

  #emit(event: ClientEvent): void {
    this.#options.onEvent?.(event);
  }

  async #nextFrame(): Promise<FrameHead> {
    const head = await this.#reader.readFrameHead();
    if (head === null) {
      throw new ConnectionError("The server closed the connection without an answer");
    }
    throwIfError(head);
    return head;
  }

  /**
   * Sends the request and payload while watching for an early answer; returns `accepted`. Aborting
   * closes the connection (the server then keeps nothing), even where the upload waits for room.
   */
  async #upload(sha256: string, size: number): Promise<FrameHead> {
    const signal = this.#options.signal;
    const stop = () => closeQuietly(this.#conn);
    signal?.addEventListener("abort", stop, { once: true });
    try {
      return await this.#send(sha256, size);
    } catch (err) {
      if (!signal?.aborted) throw err;
      throw new ServerError("CANCELLED", "The upload was cancelled as you asked", "Nothing to do");
    } finally {
      signal?.removeEventListener("abort", stop);
    }
  }

  #send(sha256: string, size: number): Promise<FrameHead> {
    const { request, input } = this.#options;
    const mediaType = this.#options.mediaType ?? mediaTypeOf(input);
    return uploadWatchingAnswer(
      this.#nextFrame(),
      (signal) =>
        writeFileFrame(
          this.#conn,
          { ...request, sha256, name: basename(input) },
          mediaType,
          input,
          {
            signal,
            onProgress: (sent) => this.#emit({ stage: "upload", sent, total: size }),
          },
        ),
    );
  }

  /** Polls status until the result frame arrives; Ctrl-C (the signal) asks for a cancel. */
  async #wait(): Promise<FrameHead> {
    const poll = () => writeFrame(this.#conn, { op: "status" }).catch(() => {});
    const timer = setInterval(poll, this.#options.pollMs ?? 60_000);
    const cancel = () => writeFrame(this.#conn, { op: "cancel" }).catch(() => {});
    this.#options.signal?.addEventListener("abort", cancel, { once: true });
    try {
      while (true) {
        const head = await this.#nextFrame();
        if (head.json.type === "result") return head;
        if (head.json.type === "status") {
          this.#emit({
            stage: "status",
            state: str(head.json.state),
            progress: num(head.json.progress),
            queuePosition: num(head.json.queue_position),
          });
        }
      }
    } finally {
      clearInterval(timer);
      this.#options.signal?.removeEventListener("abort", cancel);
    }
  }

  /** Streams the result payload to a temporary file, verifies it, then renames it into place. */
  async #download(job: string, head: FrameHead): Promise<JobResult> {
    const output = outputPath(this.#options, head.mediaType);
    const total = head.header.payloadSize;
    const partial = partialPath(output);
    const hash = sha256Stream();
    try {
      {
        using file = await Deno.open(partial, { write: true, createNew: true });
        let received = 0;
        await this.#reader.copyPayload(total, async (chunk) => {
          hash.update(chunk);
          await writeAll(file, chunk);
          received += chunk.length;
          this.#emit({ stage: "download", received, total });
        });
      }
      const actual = hash.digest("hex");
      if (actual !== str(head.json.sha256)) {
        throw new ConnectionError("The result arrived damaged: its SHA-256 does not match");
      }
      await checkOutputFree(output, this.#options.force);
      await Deno.rename(partial, output);
    } catch (err) {
      await Deno.remove(partial).catch(() => {});
      throw err;
    }
    return {
      job,
      output,
      name: str(head.json.name),
      mediaType: head.mediaType,
      size: total,
      sha256: str(head.json.sha256),
      stats: (head.json.stats ?? {}) as Record<string, unknown>,
    };
  }
}

/**
 * Asks a server what it reads and writes (the `info` op): operations, input and output formats,
 * limits. A server older than protocol 2 answers `BAD_REQUEST`, thrown as a {@linkcode ServerError}.
 */
export async function requestInfo(options: ConnectOptions): Promise<Record<string, unknown>> {
  const conn = await connectTo(options).catch((err) => {
    throw new ConnectionError(
      `Cannot connect to ${options.hostname}:${options.port}: ${err.message}`,
    );
  });
  try {
    await writeFrame(conn, { op: "info" });
    const head = await new FrameReader(conn).readFrameHead();
    if (head === null) {
      throw new ConnectionError("The server closed the connection without an answer");
    }
    throwIfError(head);
    return head.json;
  } catch (err) {
    if (err instanceof ServerError || err instanceof ConnectionError) throw err;
    throw new ConnectionError(`The connection broke: ${(err as Error).message}`, { cause: err });
  } finally {
    conn.close();
  }
}

/** `hostname`, `port` and `localAddress` of `options`, for {@linkcode connectTo}. */
/** What a job run and an attach share: overwrite, polling, retries, progress and the signal. */
function sessionOptions(options: Omit<AttachOptions, "job" | keyof ConnectOptions>) {
  return {
    ...(options.force !== undefined && { force: options.force }),
    pollMs: options.pollMs ?? 60_000,
    retries: options.retries ?? 5,
    retryDelayMs: options.retryDelayMs ?? 500,
    ...(options.onEvent && { onEvent: options.onEvent }),
    ...(options.signal && { signal: options.signal }),
  };
}

function connectOptions(options: ConnectOptions): ConnectOptions {
  return {
    hostname: options.hostname,
    port: options.port,
    ...(options.localAddress !== undefined && { localAddress: options.localAddress }),
  };
}

/**
 * The protocol features a server offers (`info`'s `features`, protocol 3): `["resume"]` when it
 * takes resumable uploads and `attach`. An older server (no `info`, or no `features`) offers none.
 */
export async function serverFeatures(options: ConnectOptions): Promise<string[]> {
  try {
    const info = await requestInfo(options);
    return Array.isArray(info.features) ? info.features.filter((f) => typeof f === "string") : [];
  } catch (err) {
    if (err instanceof ServerError) return []; // BAD_REQUEST: a server older than `info`
    throw err;
  }
}

/** Options of {@linkcode attachJob}. */
export interface AttachOptions extends ConnectOptions {
  /** The job id (`mmp` prints it). */
  job: string;
  /** Where the result goes: a file, or a directory for the server's suggested name. Default ".". */
  output?: string;
  force?: boolean;
  /** Status poll interval. Default 60 s. */
  pollMs?: number;
  retries?: number;
  retryDelayMs?: number;
  onEvent?: (event: ClientEvent) => void;
  /** Aborting detaches again (the job goes on on the server). */
  signal?: AbortSignal;
}

/** A server-suggested file name reduced to a plain base name. */
function safeName(name: string, mediaType: string): string {
  const base = basename(name.replace(/\\/g, "/")).replace(/^\.+/, "");
  return base || `result.${/^[a-z0-9]{1,8}$/.test(mediaType) ? mediaType : "out"}`;
}

/**
 * Reconnects to a job that outlived its connection (from the same address) and writes its
 * verified result, resuming where a broken download stopped.
 *
 * @example
 * ```ts
 * const result = await attachJob({ hostname: "127.0.0.1", port: 9000, job: "5f0c2a9e81d3b7c4" });
 * ```
 */
export async function attachJob(options: AttachOptions): Promise<JobResult> {
  const target = options.output ?? ".";
  const isDir = await Deno.stat(target).then((s) => s.isDirectory, () => false);
  return await runResumable({
    ...connectOptions(options),
    outputFor: (mediaType, name) => isDir ? join(target, safeName(name, mediaType)) : target,
    ...sessionOptions(options),
    onAbort: "detach",
  }, { phase: "wait", uploadId: "", askOffset: false, job: options.job, moved: 0 });
}

/** Cancels a job that outlived its connection (or deletes its undelivered result). */
export async function cancelJob(options: ConnectOptions & { job: string }): Promise<void> {
  try {
    await sendOnce(connectOptions(options), { op: "cancel", job: options.job });
  } catch (err) {
    if (err instanceof ServerError && err.code === "CANCELLED") return;
    if (err instanceof ServerError) throw err;
    throw new ConnectionError(
      `Cannot reach ${options.hostname}:${options.port}: ${(err as Error).message}`,
    );
  }
}
