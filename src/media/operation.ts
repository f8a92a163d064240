import type { JobFiles } from "../server/storage.ts";
import type { Tools } from "./ffmpeg.ts";
import type { MediaInfo } from "./probe.ts";

/** What an operation gets to work with once the upload is on disk. */
export interface JobContext {
  /** Path of the uploaded file. */
  input: string;
  /** The upload's format as an allow-listed extension (`mp4`, `avi`, …). */
  inputExtension: string;
  /** ffprobe's view of the upload. */
  info: MediaInfo;
  /** Names every file the job writes; all are deleted when the job ends. */
  files: JobFiles;
  tools: Tools;
  /** Aborted when the job is cancelled; ffmpeg is killed. */
  signal: AbortSignal;
  /** Most bytes the output may take (its share of the storage reservation). */
  maxOutputBytes: number;
  /** Reports overall progress, 0..1. */
  onProgress: (fraction: number) => void;
}

/** The file an operation produced. */
export interface JobOutput {
  path: string;
  /** Output format as a file extension; also the result frame's media type. */
  format: string;
  /** Operation-specific figures for the result's `stats`. */
  stats: Record<string, unknown>;
}

/** A validated request, ready to run once the upload is complete. */
export interface Plan {
  run(ctx: JobContext): Promise<JobOutput>;
}

/** One entry of the operations table. */
export interface Operation {
  /** The `op` value. */
  name: string;
  /** Argument keys the op accepts besides `op`, `sha256` and `name`. */
  keys: readonly string[];
  /** Validates the arguments against allow-lists (before the payload is read). */
  parse(args: Record<string, unknown>): Plan;
}

/**
 * Input options every ffmpeg run gets: only local files may be opened, so a container that names
 * a URL or another file cannot make ffmpeg reach anything but the upload.
 */
export function inputArgs(path: string): string[] {
  return ["-protocol_whitelist", "file", "-i", `file:${path}`];
}
