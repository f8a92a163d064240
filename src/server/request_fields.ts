/**
 * The MMP session's checks of request fields and its resume errors: every field a client sends is
 * checked here against its allowed shape before the session acts on it.
 *
 * @module
 */
import { MmpError } from "../protocol/errors.ts";
import type { FrameHead } from "../protocol/frame_reader.ts";

/** Upload ids: at least 128 bits, as 32 to 64 hex digits. */
const UPLOAD_ID = /^[0-9a-f]{32,64}$/i;
/** MMP job ids: 16 hex digits. */
const JOB_ID = /^[0-9a-f]{16}$/;

/** A control frame (`info`, `resume`, `attach`, …) carries neither media type nor payload. */
export function noPayload(head: FrameHead, what: string): void {
  if (head.header.payloadSize !== 0 || head.header.mediaSize !== 0) {
    throw new MmpError("BAD_FRAME", `${what} frame must carry no media type and no payload`);
  }
}

/** Refuses any key outside `allowed`, naming the first stranger (cut to 40 characters). */
export function onlyKeys(json: Record<string, unknown>, allowed: string[]): void {
  const extra = Object.keys(json).find((key) => !allowed.includes(key));
  if (extra !== undefined) {
    throw new MmpError("BAD_REQUEST", `Unknown argument for ${json.op}: ${extra.slice(0, 40)}`, {
      solution: `Use only: ${allowed.join(", ")}`,
    });
  }
}

/** The `upload` field: a client-chosen id of 128 to 256 bits, in lower case. */
export function uploadIdOf(value: unknown): string {
  if (typeof value !== "string" || !UPLOAD_ID.test(value)) {
    throw new MmpError("BAD_REQUEST", "The upload field must be 32 to 64 hex digits", {
      solution: "Choose 16 or more random bytes per file and send them as hex",
    });
  }
  return value.toLowerCase();
}

/** The `job` field: an MMP job id. */
export function jobIdOf(value: unknown): string {
  if (typeof value !== "string" || !JOB_ID.test(value)) {
    throw new MmpError("BAD_REQUEST", "The job field must be the 16 hex digits of a job id", {
      solution: "Use the job id from the accepted frame (mmp prints it)",
    });
  }
  return value;
}

/** The `offset` field: bytes the client already has or the server already holds; default 0. */
export function offsetOf(value: unknown): number {
  if (value === undefined) return 0;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new MmpError(
      "BAD_REQUEST",
      "The offset field must be a whole number of bytes, 0 or more",
    );
  }
  return value;
}

/** No such upload from this IP: the same answer whether it expired or never was. */
export function unknownUpload(): MmpError {
  return new MmpError(
    "UNKNOWN_UPLOAD",
    "This server holds no upload with that id from your address: it expired, was completed or never began",
  );
}

/** No such job from this IP: the same answer whether it expired or never was. */
export function unknownJob(): MmpError {
  return new MmpError(
    "UNKNOWN_JOB",
    "This server has no job with that id from your address: it expired, was delivered or never existed",
  );
}

/** A resume that does not repeat what the upload or job began with. */
export function resumeMismatch(description: string, solution?: string): MmpError {
  return new MmpError("RESUME_MISMATCH", description, solution ? { solution } : {});
}

/** The client's side of the socket went away. */
export function isDisconnect(err: unknown): boolean {
  return err instanceof Deno.errors.ConnectionReset || err instanceof Deno.errors.BrokenPipe ||
    err instanceof Deno.errors.ConnectionAborted;
}
