import { MmpError } from "../protocol/errors.ts";
import { runFfmpeg } from "./ffmpeg.ts";
import {
  ensureWritable,
  formatsOfKind,
  HIGH_BIT_DEPTH_ENCODERS,
  OUTPUT_FORMATS,
  type OutputFormat,
  parseFormat,
} from "./formats.ts";
import { inputArgs, type JobContext } from "./operation.ts";
import type { HdrMetadata, MediaInfo, StreamInfo } from "./probe.ts";
import { type DroppedStream, mapStreams } from "./streams.ts";

/** Largest frame side the server produces; keeps a request from asking for absurd sizes. */
export const MAX_SIDE = 7680;

/** 4:2:0 encoders need even sides: an odd row or column is cropped off (as HandBrake does). */
export const EVEN_SIDES = "crop=trunc(iw/2)*2:trunc(ih/2)*2";

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

/** The output options every video op takes: `format` and `strip_metadata`. */
export interface VideoOutput {
  format?: OutputFormat;
  stripMetadata: boolean;
}

/** Keys of {@linkcode VideoOutput} in a request. */
export const VIDEO_OUTPUT_KEYS = ["format", "strip_metadata"] as const;

/** Formats resize, aspect and convert's video path can write: every film container. */
export const VIDEO_FORMATS: readonly string[] = formatsOfKind("video");

/** Validates `format` (a film container) and `strip_metadata` (a boolean). */
export function parseVideoOutput(
  args: Record<string, unknown>,
  op: string,
  formats: readonly string[] = VIDEO_FORMATS,
): VideoOutput {
  const strip = args.strip_metadata ?? false;
  if (typeof strip !== "boolean") {
    throw new MmpError("BAD_REQUEST", "strip_metadata must be true or false");
  }
  const format = parseFormat(args.format, formats, op);
  return { ...(format ? { format } : {}), stripMetadata: strip };
}

/**
 * The output format of a video op: the one asked for, else the input's container when it is one
 * of the common film containers (mp4, m4v, mov, mkv, webm), else MP4.
 */
export function targetFor(inputExtension: string, requested?: OutputFormat): OutputFormat {
  if (requested) return requested;
  const keep = ["mp4", "m4v", "mov", "mkv", "webm"].includes(inputExtension);
  return OUTPUT_FORMATS.get(keep ? inputExtension : "mp4")!;
}

/** CRF by quality level for the encoders whose quality is a CRF (x264, x265, VP9). */
const VIDEO_CRF: Record<string, Record<Quality, number>> = {
  libx264: { high: 20, balanced: 23, small: 27 },
  libx265: { high: 22, balanced: 26, small: 30 },
  "libvpx-vp9": { high: 30, balanced: 34, small: 38 },
};

/** A named quality level. */
export type Quality = "high" | "balanced" | "small";

/** The format's video encoder and its options, at `quality` where the encoder has a CRF scale. */
export function videoCodecArgs(format: OutputFormat, quality: Quality = "high"): string[] {
  const rule = format.video!;
  const args = [...rule.args];
  const crf = VIDEO_CRF[rule.encoder]?.[quality];
  const at = args.indexOf("-crf");
  if (crf !== undefined && at >= 0) args[at + 1] = String(crf);
  return ["-c:v", rule.encoder, ...args];
}

/**
 * Picture options for the main video's encoder: the source's bit depth where the encoder can keep
 * it (10-bit in, 10-bit out), else 8-bit 4:2:0; and the source's colour description, so HDR and
 * wide-gamut video is still tagged as such.
 */
export function pictureArgs(video: StreamInfo, encoder: string): string[] {
  const deep = (video.bitDepth ?? 8) > 8 && HIGH_BIT_DEPTH_ENCODERS.has(encoder);
  const args = ["-pix_fmt:v:0", deep ? "yuv420p10le" : "yuv420p"];
  // An RGB source is converted to YUV on the way: its "gbr" matrix and full range do not apply.
  const yuv = /^(yuv|nv|p0|yuyv|uyvy)/.test(video.pixFmt ?? "yuv");
  const tags: [string, string | undefined][] = [
    ["-color_primaries:v:0", video.colorPrimaries],
    ["-color_trc:v:0", video.colorTransfer],
    ["-colorspace:v:0", yuv ? video.colorSpace : undefined],
    // Full-range "j" formats are converted to limited range on the way to yuv420p.
    ["-color_range:v:0", yuv && !video.pixFmt?.startsWith("yuvj") ? video.colorRange : undefined],
  ];
  for (const [flag, value] of tags) if (value) args.push(flag, value);
  return [...args, ...hdrArgs(video.hdr, encoder)];
}

/**
 * HDR10 mastering-display and content-light metadata for the encoders that can write it. ffmpeg
 * 5.1's wrappers do not pass it on by themselves, so each encoder gets it in its own syntax: x265
 * in units of 0.00002 (chromaticity) and 0.0001 cd/m², SVT-AV1 as plain numbers. Debian's x264
 * (0.164) has no such option: an H.264 result keeps the PQ transfer and primaries only.
 */
export function hdrArgs(hdr: HdrMetadata | undefined, encoder: string): string[] {
  if (!hdr) return [];
  const m = hdr.mastering;
  const cll = hdr.contentLight;
  const display = (xy: (v: [number, number]) => string, lum: (v: number) => string) =>
    m
      ? `G${xy(m.green)}B${xy(m.blue)}R${xy(m.red)}WP${xy(m.white)}` +
        `L(${lum(m.maxLuminance)},${lum(m.minLuminance)})`
      : undefined;
  const units = display(
    ([x, y]) => `(${Math.round(x * 50000)},${Math.round(y * 50000)})`,
    (v) => String(Math.round(v * 10000)),
  );
  const light = cll ? `${cll.maxContent},${cll.maxAverage}` : undefined;
  const params = (pairs: [string, string | undefined][]) =>
    pairs.filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`).join(":");
  switch (encoder) {
    case "libx265":
      return [
        "-x265-params",
        params([
          ["log-level", "error"],
          ["hdr10", "1"],
          ["master-display", units],
          ["max-cll", light],
        ]),
      ];
    case "libsvtav1": {
      const plain = display(([x, y]) => `(${x.toFixed(4)},${y.toFixed(4)})`, (v) => String(v));
      return ["-svtav1-params", params([["mastering-display", plain], ["content-light", light]])];
    }
    default:
      return [];
  }
}

/** The frame rate nearest to `rate` among those the format allows. */
export function nearestRate(rate: number, allowed: readonly number[]): number {
  return allowed.reduce((a, b) => (Math.abs(b - rate) < Math.abs(a - rate) ? b : a));
}

/** Rate options for the main video: strict formats get their nearest rate, VFR ones pass through. */
export function rateArgs(video: StreamInfo, format: OutputFormat): string[] {
  if (format.frameRates) {
    const rate = nearestRate(video.frameRate ?? 25, format.frameRates);
    return ["-r:v:0", rate.toFixed(5).replace(/\.?0+$/, "")];
  }
  return format.variableFrameRate ? ["-fps_mode:v:0", "passthrough"] : [];
}

/**
 * True when the upload already is what encoding it to `size` for `format` would make: that codec
 * at exactly that size, square pixels, no rotation, in that container. Re-encoding it would only
 * lose quality and time.
 */
export function alreadyAs(
  ctx: JobContext,
  format: OutputFormat,
  size: { width: number; height: number },
): boolean {
  const video = ctx.info.video!;
  return ctx.inputExtension === format.format && video.codec === format.video?.codec &&
    video.width === size.width && video.height === size.height &&
    (video.sampleAspect ?? 1) === 1 && !video.rotation;
}

/** Options of {@linkcode encodeVideo}. */
export interface EncodeVideoOptions {
  /** The main video's filter chain, or none. */
  filter?: string;
  format: OutputFormat;
  quality?: Quality;
  /** Options placed before the input (such as `-ss`). */
  before?: string[];
  /** Options placed after the codecs (such as `-t`). */
  after?: string[];
  /** Seconds of output, for progress. Default the input's duration. */
  durationSeconds?: number;
  /** Only the main video and the first audio track (a clip), not every stream. */
  mainStreamsOnly?: boolean;
  stripMetadata?: boolean;
}

/** An encoded output and the streams it could not carry. */
export interface EncodedVideo {
  path: string;
  dropped: DroppedStream[];
}

/**
 * Re-encodes the main video with `filter` into `format`, keeping every other stream the format can
 * carry (see {@linkcode mapStreams}).
 */
export async function encodeVideo(
  ctx: JobContext,
  options: EncodeVideoOptions,
): Promise<EncodedVideo> {
  const video = ctx.info.video!;
  const { format } = options;
  await ensureWritable(format, ctx.tools.ffmpeg);
  const output = ctx.files.path(`out.${format.format}`);
  const filter = [options.filter, format.videoFilter].filter(Boolean).join(",");
  const codecArgs = videoCodecArgs(format, options.quality);
  const info = options.mainStreamsOnly ? mainStreams(ctx.info) : ctx.info;
  const mapping = mapStreams(info, {
    format,
    mainVideo: { codecArgs, ...(filter ? { filter } : {}) },
    ...(options.stripMetadata ? { stripMetadata: true } : {}),
  });
  // deno-fmt-ignore
  const args = [
    ...(options.before ?? []),
    ...inputArgs(ctx.input, ctx.demuxer),
    ...mapping.args,
    ...pictureArgs(video, codecArgs[1]!),
    ...rateArgs(video, format),
    ...(options.after ?? []),
    ...format.muxerArgs,
    "-fs", String(ctx.maxOutputBytes),
    "-f", format.muxer,
    output,
  ];
  await runFfmpeg(args, {
    ffmpeg: ctx.tools.ffmpeg,
    signal: ctx.signal,
    durationSeconds: options.durationSeconds ?? ctx.info.duration,
    onProgress: ctx.onProgress,
  });
  return { path: output, dropped: mapping.dropped };
}

/** The file as if it held only its main video and first audio track (for clips). */
function mainStreams(info: MediaInfo): MediaInfo {
  const streams = info.streams.filter((s) => s === info.video || s === info.audio);
  return { ...info, streams, chapters: 0 };
}
