import { MmpError } from "../protocol/errors.ts";
import { runFfmpeg } from "./ffmpeg.ts";
import { inputArgs, type JobContext } from "./operation.ts";
import type { MediaInfo, StreamInfo } from "./probe.ts";

/** Largest frame side the server produces; keeps a request from asking for absurd sizes. */
export const MAX_SIDE = 7680;

/** Rounds to the nearest even number, at least 2: 4:2:0 video needs even sides. */
export function even(value: number): number {
  return Math.max(2, Math.round(value / 2) * 2);
}

/** The main video stream, or `BAD_REQUEST` for files without one. */
export function requireVideo(info: MediaInfo, op: string): StreamInfo {
  if (info.video?.width && info.video.height) return info.video;
  throw new MmpError("BAD_REQUEST", `The file has no video stream, so "${op}" cannot apply`, {
    solution: 'Send a video file, or use "audio" for sound-only files',
  });
}

/** Width and height as shown to the viewer: sample aspect applied, rotation taken into account. */
export function displaySize(video: StreamInfo): { width: number; height: number } {
  const width = (video.width ?? 0) * (video.sampleAspect ?? 1);
  const height = video.height ?? 0;
  const turned = video.rotation === 90 || video.rotation === 270;
  return turned ? { width: height, height: width } : { width, height };
}

/** Output container and codecs for a re-encoded video. */
export interface VideoTarget {
  /** Output extension and media type. */
  format: "mp4" | "mov" | "mkv" | "webm";
  videoCodec: "libx264" | "libvpx-vp9";
  audioCodec: "aac" | "libopus";
  /** Audio codecs this container takes as they are. */
  copyableAudio: readonly string[];
}

const TARGETS: Record<VideoTarget["format"], VideoTarget> = {
  mp4: { format: "mp4", videoCodec: "libx264", audioCodec: "aac", copyableAudio: ["aac", "mp3"] },
  mov: { format: "mov", videoCodec: "libx264", audioCodec: "aac", copyableAudio: ["aac", "mp3"] },
  mkv: {
    format: "mkv",
    videoCodec: "libx264",
    audioCodec: "aac",
    copyableAudio: ["aac", "mp3", "opus", "vorbis", "flac", "ac3", "eac3"],
  },
  webm: {
    format: "webm",
    videoCodec: "libvpx-vp9",
    audioCodec: "libopus",
    copyableAudio: ["opus", "vorbis"],
  },
};

/**
 * Keeps the input's container when it can carry the result (H.264/AAC in mp4, m4v, mov, mkv;
 * VP9/Opus in webm); every other input becomes MP4.
 */
export function targetFor(inputExtension: string): VideoTarget {
  switch (inputExtension) {
    case "mov":
      return TARGETS.mov;
    case "mkv":
      return TARGETS.mkv;
    case "webm":
      return TARGETS.webm;
    default:
      return TARGETS.mp4;
  }
}

/** Encoder settings by quality level: CRF for x264 (preset `fast`) and VP9. */
const VIDEO_CRF = {
  high: { x264: 20, vp9: 30 },
  balanced: { x264: 23, vp9: 34 },
  small: { x264: 27, vp9: 38 },
};

/** A named quality level. */
export type Quality = keyof typeof VIDEO_CRF;

/** ffmpeg options for the target's video encoder. */
export function videoCodecArgs(target: VideoTarget, quality: Quality = "high"): string[] {
  if (target.videoCodec === "libvpx-vp9") {
    const crf = String(VIDEO_CRF[quality].vp9);
    // deno-fmt-ignore
    return [
      "-c:v", "libvpx-vp9", "-crf", crf, "-b:v", "0", "-deadline", "good", "-cpu-used", "5",
      "-row-mt", "1", "-pix_fmt", "yuv420p",
    ];
  }
  const crf = String(VIDEO_CRF[quality].x264);
  return ["-c:v", "libx264", "-preset", "fast", "-crf", crf, "-pix_fmt", "yuv420p"];
}

/** ffmpeg options that keep the first audio track: copied when the container takes it. */
export function audioArgs(info: MediaInfo, target: VideoTarget): string[] {
  const audio = info.audio;
  if (!audio) return [];
  const map = ["-map", `0:${audio.index}`];
  if (target.copyableAudio.includes(audio.codec)) return [...map, "-c:a", "copy"];
  const bitrate = target.audioCodec === "libopus" ? "96k" : "160k";
  return [...map, "-c:a", target.audioCodec, "-b:a", bitrate];
}

/** Container options: MP4 and MOV get their index up front so they play while downloading. */
export function muxerArgs(format: string): string[] {
  return format === "mp4" || format === "mov" ? ["-movflags", "+faststart"] : [];
}

/**
 * True when the upload already is what encoding it to `size` for `target` would make: that codec
 * at exactly that size, square pixels, no rotation, in that container. Re-encoding it would only
 * lose quality and time.
 */
export function alreadyAs(
  ctx: JobContext,
  target: VideoTarget,
  size: { width: number; height: number },
): boolean {
  const video = ctx.info.video!;
  const codec = target.videoCodec === "libx264" ? "h264" : "vp9";
  return ctx.inputExtension === target.format && video.codec === codec &&
    video.width === size.width && video.height === size.height &&
    (video.sampleAspect ?? 1) === 1 && !video.rotation;
}

/** Options of {@linkcode encodeVideo}. */
export interface EncodeVideoOptions {
  /** The `-vf` filter chain, or none. */
  filter?: string;
  target: VideoTarget;
  quality?: Quality;
  /** Options placed before the input (such as `-ss`). */
  before?: string[];
  /** Options placed after the codecs (such as `-t`). */
  after?: string[];
  /** Seconds of output, for progress. Default the input's duration. */
  durationSeconds?: number;
}

/** Re-encodes the main video (and first audio) of the upload; returns the output path. */
export async function encodeVideo(ctx: JobContext, options: EncodeVideoOptions): Promise<string> {
  const video = ctx.info.video!;
  const output = ctx.files.path(`out.${options.target.format}`);
  // deno-fmt-ignore
  const args = [
    ...(options.before ?? []),
    ...inputArgs(ctx.input, ctx.demuxer),
    "-map", `0:${video.index}`,
    ...(options.filter ? ["-vf", options.filter] : []),
    ...videoCodecArgs(options.target, options.quality),
    ...audioArgs(ctx.info, options.target),
    ...(options.after ?? []),
    "-map_metadata", "0",
    ...muxerArgs(options.target.format),
    "-fs", String(ctx.maxOutputBytes),
    output,
  ];
  await runFfmpeg(args, {
    ffmpeg: ctx.tools.ffmpeg,
    signal: ctx.signal,
    durationSeconds: options.durationSeconds ?? ctx.info.duration,
    onProgress: ctx.onProgress,
  });
  return output;
}
