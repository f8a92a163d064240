import { basename, dirname, extname, join, resolve } from "node:path";
import { hashFile, sha256Stream } from "../protocol/checksum.ts";
import { type FrameHead, FrameReader } from "../protocol/frame_reader.ts";
import { writeAll, writeFileFrame, writeFrame } from "../protocol/frame_writer.ts";
import { type ClientConn, type ConnectOptions, connectTo } from "./socket.ts";

/** What the client reports while a job goes on. */
export type ClientEvent =
  | { stage: "hashing"; done: number; total: number }
  | { stage: "upload"; sent: number; total: number }
  | { stage: "accepted"; job: string; queuePosition: number }
  | { stage: "status"; state: string; progress: number; queuePosition: number }
  | { stage: "download"; received: number; total: number };

/** The server answered with an error frame. */
export class ServerError extends Error {
  readonly code: string;
  readonly solution: string;
  constructor(code: string, description: string, solution: string) {
    super(description);
    this.name = "ServerError";
    this.code = code;
    this.solution = solution;
  }
}

/** The server could not be reached, or the connection broke or carried nonsense. */
export class ConnectionError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConnectionError";
  }
}

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
  /** Aborting asks the server to cancel the job. */
  signal?: AbortSignal;
}

/** A finished job. */
export interface JobResult {
  job: string;
  /** Where the result was written. */
  output: string;
  /** The server's suggested file name. */
  name: string;
  mediaType: string;
  size: number;
  sha256: string;
  stats: Record<string, unknown>;
}

function str(value: unknown): string {
  return typeof value === "string" ? value : "";
}

function num(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}

/** Throws the server's error frame as a {@linkcode ServerError}. */
function throwIfError(head: FrameHead): void {
  if (head.json.type !== "error") return;
  throw new ServerError(
    str(head.json.code) || "UNKNOWN",
    str(head.json.description),
    str(head.json.solution),
  );
}

async function checkOutputFree(output: string, force = false): Promise<void> {
  if (force) return;
  const exists = await Deno.lstat(output).then(() => true, () => false);
  if (exists) throw new Deno.errors.AlreadyExists(`${output} exists (use --force to replace it)`);
}

/** The output path for a result of `mediaType`. */
function outputFor(options: RunJobOptions, mediaType: string): string {
  const current = extname(options.output);
  if (!options.matchExtension || !/^[a-z0-9]{1,8}$/.test(mediaType)) return options.output;
  if (current.slice(1).toLowerCase() === mediaType) return options.output;
  const base = options.output.slice(0, options.output.length - current.length);
  const candidate = `${base}.${mediaType}`;
  return resolve(candidate) === resolve(options.input) ? `${base}.out.${mediaType}` : candidate;
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
    conn.close();
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

  /** Sends the request and payload while watching for an early answer; returns `accepted`. */
  async #upload(sha256: string, size: number): Promise<FrameHead> {
    const { request, input } = this.#options;
    const mediaType = this.#options.mediaType ?? extname(input).slice(1).toLowerCase();
    const stop = new AbortController();
    const answer = this.#nextFrame();
    answer.catch(() => {}).finally(() => stop.abort());
    try {
      await writeFileFrame(
        this.#conn,
        { ...request, sha256, name: basename(input) },
        mediaType,
        input,
        {
          signal: stop.signal,
          onProgress: (sent) => this.#emit({ stage: "upload", sent, total: size }),
        },
      );
    } catch (err) {
      if (!stop.signal.aborted) await Promise.race([answer, delay(2000)]).catch(() => {});
      if (!stop.signal.aborted) throw err;
    }
    const head = await answer;
    if (head.json.type !== "accepted") {
      throw new ConnectionError("The server sent an unexpected frame");
    }
    return head;
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
    const output = outputFor(this.#options, head.mediaType);
    const total = head.header.payloadSize;
    const partial = join(
      dirname(output),
      `.${basename(output)}.${crypto.randomUUID()}.mmp-partial`,
    );
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

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    Deno.unrefTimer(timer);
  });
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
