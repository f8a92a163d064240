import { type ErrorCode, MmpError, type MmpErrorOptions } from "../protocol/errors.ts";
import { toErrorReport } from "../jobs/error_report.ts";

/** The HTTP status for each protocol error code. */
const STATUS: Readonly<Record<ErrorCode, number>> = {
  BAD_FRAME: 400,
  BAD_REQUEST: 400,
  UNSUPPORTED_MEDIA: 415,
  TOO_LARGE: 413,
  STORAGE_FULL: 507,
  BUSY: 409,
  CHECKSUM_MISMATCH: 422,
  TIMEOUT: 408,
  NO_AUDIO: 422,
  PROCESSING_FAILED: 422,
  CANCELLED: 409,
  SHUTTING_DOWN: 503,
  UNAVAILABLE: 503,
  INTERNAL: 500,
  UNKNOWN_UPLOAD: 404,
  UNKNOWN_JOB: 404,
  RESUME_MISMATCH: 409,
};

/** An error that only HTTP has (404, 405, 411, 403, 421): its own status, an MMP code. */
export class HttpError extends MmpError {
  readonly status: number;
  /** Extra response headers, such as `Allow` for a 405. */
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    code: ErrorCode,
    description: string,
    options: MmpErrorOptions & { headers?: Record<string, string> } = {},
  ) {
    super(code, description, options);
    this.name = "HttpError";
    this.status = status;
    this.headers = options.headers ?? {};
  }
}

/** `{"code","description","solution"}`: the body of every error answer, as in MMP's error frames. */
export interface ErrorBody {
  code: ErrorCode;
  description: string;
  solution: string;
}

/** What a client is told about `error`, and what the log gets besides. */
export function describeError(
  error: unknown,
): { body: ErrorBody; status: number; detail?: string } {
  const { frame, detail } = toErrorReport(error);
  const body = { code: frame.code, description: frame.description, solution: frame.solution };
  const status = error instanceof HttpError ? error.status : STATUS[frame.code];
  return detail === undefined ? { body, status } : { body, status, detail };
}

/** A JSON answer. */
export function jsonResponse(
  body: unknown,
  status = 200,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", "Cache-Control": "no-store", ...headers },
  });
}

/** The JSON error answer for `error`; server-side detail goes to `log`. */
export function errorResponse(error: unknown, log: (line: string) => void): Response {
  const { body, status, detail } = describeError(error);
  if (detail) log(`error detail (http): ${detail}`);
  return jsonResponse(body, status, error instanceof HttpError ? error.headers : {});
}

/** 404 for any path or job this client cannot see. */
export function notFound(what = "There is nothing at this address"): HttpError {
  return new HttpError(404, "BAD_REQUEST", what, {
    solution: "Check the address; jobs are visible only from the address that sent them",
  });
}

/** 405 with the methods that are allowed. */
export function methodNotAllowed(allowed: string[]): HttpError {
  return new HttpError(405, "BAD_REQUEST", `Method not allowed here: use ${allowed.join(" or ")}`, {
    headers: { Allow: allowed.join(", ") },
  });
}
