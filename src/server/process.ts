import { MmpError } from "../protocol/errors.ts";
import { hashFile } from "../protocol/checksum.ts";
import { FfmpegError, type Tools } from "../media/ffmpeg.ts";
import type { JobOutput, Plan } from "../media/operation.ts";
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
}

async function probeUpload(options: ProcessOptions): Promise<MediaInfo> {
  try {
    const info = await probe(options.input, {
      ffprobe: options.tools.ffprobe,
      signal: options.signal,
    });
    if (info.streams.length > 0) return info;
  } catch (err) {
    if (!(err instanceof FfmpegError)) throw err;
  }
  throw new MmpError("PROCESSING_FAILED", "The file could not be read as audio or video", {
    solution: "Check that the file plays in a media player and that its type matches its content",
  });
}

/** Probes the upload, runs the plan, and checks and hashes what it produced. */
export async function processUpload(options: ProcessOptions): Promise<ProcessedOutput> {
  const info = await probeUpload(options);
  const output = await options.plan.run({ ...options, info });
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
