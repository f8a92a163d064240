/** Stable error codes of the MMP protocol; see docs/protocol.md. */
export const ERROR_CODES = [
  "BAD_FRAME",
  "BAD_REQUEST",
  "UNSUPPORTED_MEDIA",
  "TOO_LARGE",
  "STORAGE_FULL",
  "BUSY",
  "CHECKSUM_MISMATCH",
  "TIMEOUT",
  "NO_AUDIO",
  "PROCESSING_FAILED",
  "CANCELLED",
  "SHUTTING_DOWN",
  "UNAVAILABLE",
  "INTERNAL",
  "UNKNOWN_UPLOAD",
  "UNKNOWN_JOB",
  "RESUME_MISMATCH",
] as const;

/** One of the stable protocol error codes. */
export type ErrorCode = typeof ERROR_CODES[number];

/** The solution sent when the thrower gives none: what a user can do about each code. */
const DEFAULT_SOLUTIONS: Record<ErrorCode, string> = {
  BAD_FRAME: "Use an MMP client that follows docs/protocol.md, such as `mmp convert`",
  BAD_REQUEST: "Check the operation and its arguments against `mmp --help`",
  UNSUPPORTED_MEDIA: "Send a video file with a common extension such as mp4, mkv, mov, webm or avi",
  TOO_LARGE: "Send a smaller file, or split it and send the parts one by one",
  STORAGE_FULL: "Try again later, or ask the operator to raise --max-storage",
  BUSY: "Wait for your running job to finish, or cancel it, then send the next one",
  CHECKSUM_MISMATCH: "The file changed or was damaged in transit: send it again",
  TIMEOUT: "Check your network connection and send the file again",
  NO_AUDIO: "Pick a video that has a sound track, or use another operation",
  PROCESSING_FAILED: "Check that the file plays in a media player; re-export it and try again",
  CANCELLED: "Nothing to do: the job was cancelled as asked",
  SHUTTING_DOWN: "The server is restarting: send the job again in a minute",
  UNAVAILABLE: "The service cannot take jobs right now: send the job again in a minute",
  INTERNAL: "Try again; if it keeps happening, report it to the server's operator",
  UNKNOWN_UPLOAD: "Send the whole file again as a new upload (mmp does this by itself)",
  UNKNOWN_JOB:
    "Check the job id and connect from the address that sent the job; a job waits at most the server's --resume-window",
  RESUME_MISMATCH:
    'Ask with {"op":"resume"} how much the server holds and send the same request from there, or start a new upload',
};

/** Options of {@linkcode MmpError}. */
export interface MmpErrorOptions {
  /** What the user can do about it; defaults to the code's generic advice. */
  solution?: string;
  /** The underlying error, kept for the server log only. */
  cause?: unknown;
}

/**
 * An error that the server sends to the client as an error frame.
 *
 * @example
 * ```ts
 * throw new MmpError("BUSY", "Another job from your address is still running");
 * ```
 */
export class MmpError extends Error {
  /** Stable protocol code. */
  readonly code: ErrorCode;
  /** What the user can do about it. */
  readonly solution: string;

  constructor(code: ErrorCode, description: string, options: MmpErrorOptions = {}) {
    super(description, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "MmpError";
    this.code = code;
    this.solution = options.solution ?? DEFAULT_SOLUTIONS[code];
  }
}

/** Whether a string is one of the protocol's error codes. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && (ERROR_CODES as readonly string[]).includes(value);
}
