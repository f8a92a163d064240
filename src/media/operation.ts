import type { JobFiles } from "../jobs/storage.ts";
import { FORMAT_WHITELIST } from "./demuxers.ts";
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
  /** The demuxer ffprobe detected, forced on every later read of the upload. */
  demuxer: string;
  /** Names every file the job writes; all are deleted when the job ends. */
  files: JobFiles;
  tools: Tools;
  /** Aborted when the job is cancelled; ffmpeg is killed. */
  signal: AbortSignal;
  /** Most bytes the output may take (its share of the storage reservation). */
  maxOutputBytes: number;
  /** Reports overall progress, 0..1. */
  onProgress: (fraction: number) => void;
  /**
   * Says how many threads the job keeps busy now, when a phase uses fewer than the plan's
   * `threads` (none given: all of them again); the node's queue lends the rest to waiting jobs.
   */
  useThreads?: (threads?: number) => void;
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
  /**
   * Threads its ffmpeg keeps busy on a node of `cores` cores: what the job queue charges against
   * the node's CPU budget (`--cpus`). Absent: every core (the video encoders' automatic threads).
   */
  threads?(cores: number): number;
}

/** Threads of an ffmpeg run that encodes sound only: the audio encoders are single-threaded. */
export const AUDIO_THREADS = 1;

/** Threads of an animation: decoding beside one palette/encoder thread (`-threads 2`). */
export function animationThreads(cores: number): number {
  return Math.min(2, cores);
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
 * Input options every ffmpeg and ffprobe run gets: only the `file` protocol (no network), only the
 * allowed demuxers (src/media/demuxers.ts), and, once probed, the demuxer forced so ffmpeg cannot
 * re-detect something else.
 */
export function inputArgs(path: string, demuxer?: string): string[] {
  // deno-fmt-ignore
  return [
    "-protocol_whitelist", "file",
    "-format_whitelist", FORMAT_WHITELIST,
    ...(demuxer ? ["-f", demuxer] : []),
    // MOV can point its tracks at other files; off by default, and said so where it matters.
    ...(demuxer === "mov" ? ["-enable_drefs", "0", "-use_absolute_path", "0"] : []),
    "-i", `file:${path}`,
  ];
}
