import { type ErrorCode, MmpError } from "../protocol/errors.ts";
import { FrameError } from "../protocol/frame.ts";
import { FfmpegError } from "../media/ffmpeg.ts";

/** The JSON of an MMP error frame; the HTTP API sends the same without `type`. */
export interface ErrorFrame {
  [key: string]: unknown;
  type: "error";
  code: ErrorCode;
  description: string;
  solution: string;
}

/** What to log about an error that the client does not see in full. */
export interface ErrorReport {
  frame: ErrorFrame;
  /** Server-side detail (ffmpeg's log, a stack), never sent to the client. */
  detail?: string;
}

function frameOf(error: MmpError): ErrorFrame {
  return {
    type: "error",
    code: error.code,
    description: error.message,
    solution: error.solution,
  };
}

/**
 * The one place where errors become what a client sees, on every transport. Protocol errors keep
 * their code; ffmpeg failures become `PROCESSING_FAILED` without ffmpeg's output; anything
 * unexpected is `INTERNAL`.
 */
export function toErrorReport(error: unknown): ErrorReport {
  if (error instanceof MmpError) return { frame: frameOf(error) };
  if (error instanceof FrameError) {
    return {
      frame: frameOf(new MmpError("BAD_FRAME", error.message.replace(/^Cannot /, "Could not "))),
    };
  }
  if (error instanceof Error && /No space left on device|os error 28/.test(error.message)) {
    return {
      frame: frameOf(
        new MmpError("STORAGE_FULL", "The server's disk filled up while your file was being saved"),
      ),
      detail: error.message,
    };
  }
  if (error instanceof FfmpegError) {
    return {
      frame: frameOf(
        new MmpError(
          "PROCESSING_FAILED",
          "ffmpeg could not process the file: it may be damaged or use a codec this server cannot decode",
        ),
      ),
      detail: error.log.trim().split("\n").slice(-5).join(" | "),
    };
  }
  return {
    frame: frameOf(new MmpError("INTERNAL", "The server hit an unexpected error")),
    detail: error instanceof Error ? (error.stack ?? error.message) : String(error),
  };
}
