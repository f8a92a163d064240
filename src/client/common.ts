/** What every client flow shares: events, errors, small frame helpers, output paths. */
import { basename, dirname, extname, join, resolve } from "node:path";
import type { FrameHead } from "../protocol/frame_reader.ts";

/** The stage of a job a broken connection interrupted. */
export type JobPhase = "upload" | "wait" | "download";

/** What the client reports while a job goes on. */
export type ClientEvent =
  | { stage: "hashing"; done: number; total: number }
  | { stage: "upload"; sent: number; total: number }
  | { stage: "accepted"; job: string; queuePosition: number }
  | { stage: "status"; state: string; progress: number; queuePosition: number }
  | { stage: "download"; received: number; total: number }
  /** The connection broke; the client reconnects after `delayMs` (try `attempt` of `retries`). */
  | {
    stage: "reconnect";
    phase: JobPhase;
    attempt: number;
    retries: number;
    delayMs: number;
    reason: string;
  }
  /** Back on the job after a break: the upload or download goes on from `offset` of `total`. */
  | { stage: "resume"; phase: JobPhase; offset: number; total: number };

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

/** The user let go of a running job (Ctrl-C): it goes on on the server, `mmp attach` gets it. */
export class DetachedError extends Error {
  /** The job id to attach to. */
  readonly job: string;
  /** Seconds the server keeps the job for its client. */
  constructor(job: string) {
    super(`Detached from job ${job}: it goes on on the server`);
    this.name = "DetachedError";
    this.job = job;
  }
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

/** A JSON field as a string ("" when it is not one). */
export function str(value: unknown): string {
  return typeof value === "string" ? value : "";
}

/** A JSON field as a finite number (0 when it is not one). */
export function num(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}

/** Throws the server's error frame as a {@linkcode ServerError}. */
export function throwIfError(head: FrameHead): void {
  if (head.json.type !== "error") return;
  throw new ServerError(
    str(head.json.code) || "UNKNOWN",
    str(head.json.description),
    str(head.json.solution),
  );
}

/** Throws `AlreadyExists` when `output` exists and `force` is not set. */
export async function checkOutputFree(output: string, force = false): Promise<void> {
  if (force) return;
  const exists = await Deno.lstat(output).then(() => true, () => false);
  if (exists) throw new Deno.errors.AlreadyExists(`${output} exists (use --force to replace it)`);
}

/** Where to write a result of `mediaType`, given what the user asked for. */
export interface OutputChoice {
  /** The output path asked for (or the default one). */
  output: string;
  /** The input, which the output must never replace. */
  input?: string;
  /** When the result's format differs from `output`'s extension, swap the extension to match. */
  matchExtension?: boolean;
}

/** The output path for a result of `mediaType`. */
export function outputFor(choice: OutputChoice, mediaType: string): string {
  const current = extname(choice.output);
  if (!choice.matchExtension || !/^[a-z0-9]{1,8}$/.test(mediaType)) return choice.output;
  if (current.slice(1).toLowerCase() === mediaType) return choice.output;
  const base = choice.output.slice(0, choice.output.length - current.length);
  const candidate = `${base}.${mediaType}`;
  if (choice.input === undefined) return candidate;
  return resolve(candidate) === resolve(choice.input) ? `${base}.out.${mediaType}` : candidate;
}

/** A hidden temporary name beside `output`; it becomes the output only when complete. */
export function partialPath(output: string): string {
  return join(dirname(output), `.${basename(output)}.${crypto.randomUUID()}.mmp-partial`);
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** `bytes` random bytes as lower-case hex. */
export function randomHex(bytes: number): string {
  const random = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(random, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Sends a payload while the server may answer before the last byte (an error frame): the write
 * stops when an answer arrives, and that answer, not the broken write, is what counts. Returns the
 * `accepted` frame; an error frame rejects `answer` with its {@linkcode ServerError}.
 */
export async function uploadWatchingAnswer(
  answer: Promise<FrameHead>,
  send: (signal: AbortSignal) => Promise<void>,
): Promise<FrameHead> {
  const stop = new AbortController();
  answer.catch(() => {}).finally(() => stop.abort());
  try {
    await send(stop.signal);
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
