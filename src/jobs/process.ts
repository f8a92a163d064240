import { MmpError } from "../protocol/errors.ts";
import { hashFile } from "../protocol/checksum.ts";
import { FfmpegError, type Tools } from "../media/ffmpeg.ts";
import { inputArgs, type JobOutput, type Plan } from "../media/operation.ts";
import { type MediaInfo, probe } from "../media/probe.ts";
import type { JobFiles } from "./storage.ts";

/** A finished job's output, checked and hashed, ready to send. */
export interface ProcessedOutput extends JobOutput {
  size: number;
  sha256: string;
}

/** Inputs of {@linkcode processUpload}. */
export interface ProcessOptions {
  input: string;
  inputExtension: string;
  plan: Plan;
  files: JobFiles;
  tools: Tools;
  signal: AbortSignal;
  maxOutputBytes: number;
  onProgress: (fraction: number) => void;
  /** See `JobContext.useThreads`. */
  useThreads?: (threads?: number) => void;
  limits: MediaLimits;
}

/** Decode-bomb guards: what an upload may decode to, and how long a job may run. */
export interface MediaLimits {
  /** Most pixels per frame (width × height). */
  maxPixels: number;
  /** Longest media duration in seconds. */
  maxDurationSeconds: number;
  /** Longest a job may process, in seconds. */
  maxJobSeconds: number;
}

/** Defaults: 8K frames, 4 hours of media, one hour of processing. */
export const DEFAULT_LIMITS: MediaLimits = {
  maxPixels: 7680 * 4320,
  maxDurationSeconds: 4 * 3600,
  maxJobSeconds: 3600,
};

async function probeUpload(options: ProcessOptions): Promise<MediaInfo> {
  try {
    const info = await probe(options.input, {
      ffprobe: options.tools.ffprobe,
      signal: options.signal,
      inputArgs: inputArgs(options.input),
    });
    if (info.streams.length > 0) return info;
  } catch (err) {
    if (!(err instanceof FfmpegError)) throw err;
  }
  throw new MmpError("PROCESSING_FAILED", "The file could not be read as audio or video", {
    solution: "Check that the file plays in a media player and that its type matches its content",
  });
}

function checkLimits(info: MediaInfo, limits: MediaLimits): void {
  const video = info.video;
  if (video?.width && video.height && video.width * video.height > limits.maxPixels) {
    throw new MmpError(
      "TOO_LARGE",
      `The video's frames (${video.width}x${video.height}) are larger than this server handles`,
      {
        solution: `Send a video of at most ${
          limits.maxPixels.toLocaleString("en")
        } pixels per frame (8K)`,
      },
    );
  }
  if (info.duration > limits.maxDurationSeconds) {
    throw new MmpError(
      "TOO_LARGE",
      `The media lasts ${Math.round(info.duration)} s, longer than this server handles`,
      {
        solution: `Send at most ${limits.maxDurationSeconds} seconds; cut longer files into parts`,
      },
    );
  }
}

/** Probes the upload, runs the plan within the time limit, and checks and hashes the output. */
export async function processUpload(options: ProcessOptions): Promise<ProcessedOutput> {
  const deadline = new AbortController();
  const seconds = options.limits.maxJobSeconds;
  const timer = setTimeout(() =>
    deadline.abort(
      new MmpError("TIMEOUT", `Processing took longer than this server's limit of ${seconds} s`, {
        solution: "Send a shorter or smaller file, or ask the operator to raise --max-job-seconds",
      }),
    ), seconds * 1000);
  try {
    return await processWithin({
      ...options,
      signal: AbortSignal.any([options.signal, deadline.signal]),
    });
  } catch (err) {
    throw deadline.signal.aborted ? deadline.signal.reason : err;
  } finally {
    clearTimeout(timer);
  }
}

async function processWithin(options: ProcessOptions): Promise<ProcessedOutput> {
  // ffprobe is one thread, most of it start-up: an all-core job lends the others meanwhile.
  options.useThreads?.(1);
  const info = await probeUpload(options);
  options.useThreads?.();
  checkLimits(info, options.limits);
  const demuxer = info.formatName.split(",")[0]!;
  const output = await options.plan.run({ ...options, info, demuxer });
  const { size } = await Deno.stat(output.path);
  if (output.path !== options.input && size >= options.maxOutputBytes) {
    throw new MmpError("TOO_LARGE", "The result would be larger than the space reserved for it", {
      solution: "Ask for a smaller output (lower resolution or a shorter range)",
    });
  }
  if (size === 0) throw new MmpError("PROCESSING_FAILED", "ffmpeg produced an empty result");
  options.onProgress(1);
  return { ...output, size, sha256: await hashFile(output.path) };
}
