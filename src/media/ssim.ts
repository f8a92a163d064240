import { FfmpegError, toolCommand } from "./ffmpeg.ts";

/** Options of {@linkcode measureSsim}. */
export interface SsimOptions {
  ffmpeg: string;
  /** Frame rate of the common grid both videos are sampled on (the reference's rate). */
  frameRate: number;
  /** Reference frame size; the distorted video is scaled to it (rounded down to even) if it differs. */
  width: number;
  height: number;
  signal?: AbortSignal;
  /**
   * How ffmpeg opens the reference, when it needs more than a path (an upload with its demuxer
   * and format allow-list); default `-i file:REFERENCE`.
   */
  referenceArgs?: string[];
  /**
   * Also writes the distorted video's packets (sizes and keyframe flags, ffmpeg's `framecrc`) to
   * this file, read in the same pass: one ffprobe process fewer per scored encode.
   */
  packetLog?: string;
}

/** The scoring command's second output: the distorted video's packets, copied to `framecrc`. */
export function packetLogArgs(options: SsimOptions): string[] {
  if (options.packetLog === undefined) return [];
  return ["-map", "0:v:0", "-c", "copy", "-f", "framecrc", `file:${options.packetLog}`];
}

/** The input options of both videos: frames get timestamps where the container has none. */
export function scoredInputs(distorted: string, reference: string, options: SsimOptions) {
  const plain = (path: string) => ["-protocol_whitelist", "file", "-i", `file:${path}`];
  return [
    "-fflags",
    "+genpts",
    ...plain(distorted),
    "-fflags",
    "+genpts",
    ...(options.referenceArgs ?? plain(reference)),
  ];
}

/**
 * The filter graph that lines both videos up before scoring. Frames are matched by time on one
 * constant-rate grid, which survives the usual traps: containers without timestamps (genpts),
 * B-frame and edit-list start offsets (PTS - STARTPTS), and frames an encoder duplicated or
 * dropped to reach a constant rate (fps).
 */
export function alignmentGraph(options: SsimOptions, metric = "ssim"): string {
  const grid = `settb=AVTB,setpts=PTS-STARTPTS,fps=${options.frameRate.toFixed(6)}`;
  // Scored on the reference's even-sided crop: what a 4:2:0 encode of it can show at all.
  const [width, height] = [
    options.width - (options.width % 2),
    options.height - (options.height % 2),
  ];
  const size = `scale=${width}:${height}:flags=bicubic`;
  const crop = `crop=${width}:${height}:0:0`;
  return `[0:v]${grid},${size},format=yuv420p[d];[1:v]${grid},${crop},format=yuv420p[r];[d][r]${metric}`;
}

/** SSIM (the `All` figure, 0..1) of `distorted` against `reference`, frames aligned first. */
export async function measureSsim(
  distorted: string,
  reference: string,
  options: SsimOptions,
): Promise<number> {
  const { success, code, stderr } = await toolCommand(options.ffmpeg, {
    args: [
      "-hide_banner",
      "-nostdin",
      "-nostats",
      "-loglevel",
      "info",
      ...scoredInputs(distorted, reference, options),
      "-lavfi",
      alignmentGraph(options),
      "-f",
      "null",
      "-",
      ...packetLogArgs(options),
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    ...(options.signal ? { signal: options.signal } : {}),
  }).output();
  options.signal?.throwIfAborted();
  const log = new TextDecoder().decode(stderr);
  const match = /SSIM .*All:([0-9.]+)/.exec(log);
  if (!success || !match) throw new FfmpegError("ffmpeg ssim", code, log.slice(-4096));
  return Number(match[1]);
}
