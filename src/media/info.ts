import { INPUT_EXTENSIONS } from "../protocol/media_type.ts";
import { availableEncoders } from "./encoders.ts";
import type { Tools } from "./ffmpeg.ts";
import { type OutputFormat, writableFormats } from "./formats.ts";
import { AUDIO_FORMATS } from "./audio.ts";
import { CLIP_FORMATS, MAX_GIF_SECONDS } from "./clip.ts";
import { COMPRESS_FORMATS } from "./compress.ts";
import { CONVERT_FORMATS } from "./convert.ts";
import { RESIZE_PRESETS } from "./resize.ts";
import { VIDEO_FORMATS } from "./video.ts";

/**
 * The protocol version `info` reports: 2 added `info`, `convert` and `format` everywhere; 3 added
 * the `features` list (`resume`: resumable uploads, jobs that outlive their connection, `attach`).
 */
export const PROTOCOL_VERSION = "3";

/** Limits a client may want to know before it sends a job (the server's media limits and quota). */
export interface InfoLimits {
  maxPixels: number;
  maxDurationSeconds: number;
  maxJobSeconds: number;
  /** The storage quota: no upload may be larger. */
  maxStorageBytes: number;
}

/** What each op takes besides its `format` (the formats are listed per op). */
const OPERATION_ARGS: Record<string, Record<string, unknown>> = {
  compress: {
    quality: ["high", "balanced", "small"],
    codec: ["av1", "hevc", "h264"],
    strip_metadata: "boolean",
  },
  resize: {
    resolution: [...Object.keys(RESIZE_PRESETS), "WIDTHxHEIGHT"],
    strip_metadata: "boolean",
  },
  aspect: { aspect: "W:H", mode: ["pad", "crop", "stretch"], strip_metadata: "boolean" },
  audio: {},
  clip: { start: "seconds or [HH:]MM:SS[.fff]", end: "seconds or [HH:]MM:SS[.fff]" },
  convert: { strip_metadata: "boolean" },
};

/** Formats each op may write, before the encoders this ffmpeg has are taken into account. */
const OPERATION_FORMATS: Record<string, readonly string[]> = {
  compress: COMPRESS_FORMATS,
  resize: VIDEO_FORMATS,
  aspect: VIDEO_FORMATS,
  audio: AUDIO_FORMATS,
  clip: CLIP_FORMATS,
  convert: CONVERT_FORMATS,
};

/** Default format of each op (`null`: the input's container, or MP4). */
const DEFAULT_FORMATS: Record<string, string | null> = {
  compress: null,
  resize: null,
  aspect: null,
  audio: "mp3",
  clip: null,
  convert: null,
};

function describeFormat(format: OutputFormat): Record<string, unknown> {
  return {
    format: format.format,
    kind: format.kind,
    mime: format.mime,
    ...(format.video ? { video_codec: format.video.codec } : {}),
    ...(format.audio ? { audio_codec: format.audio.codec } : {}),
    ...(format.subtitles ? { subtitle_codec: format.subtitles.codec } : {}),
    multiple_audio_tracks: format.multiAudio,
    attachments: format.attachments,
    chapters: format.chapters,
  };
}

/**
 * The `info` answer (MMP op `info`, HTTP `GET /api/info`): what this server reads, writes and
 * allows, so a client can offer exactly that. Formats whose encoders this ffmpeg lacks are left
 * out.
 */
export async function serverInfo(
  tools: Tools,
  limits: InfoLimits,
): Promise<Record<string, unknown>> {
  const writable = writableFormats(await availableEncoders(tools.ffmpeg));
  const names = new Set(writable.map((f) => f.format));
  const operations: Record<string, unknown> = {};
  for (const [op, args] of Object.entries(OPERATION_ARGS)) {
    operations[op] = {
      ...args,
      formats: OPERATION_FORMATS[op]!.filter((f) => names.has(f)),
      default_format: DEFAULT_FORMATS[op],
    };
  }
  return {
    type: "info",
    version: PROTOCOL_VERSION,
    operations,
    input_formats: [...INPUT_EXTENSIONS],
    output_formats: writable.map(describeFormat),
    limits: {
      max_upload_bytes: limits.maxStorageBytes,
      max_pixels: limits.maxPixels,
      max_duration_seconds: limits.maxDurationSeconds,
      max_job_seconds: limits.maxJobSeconds,
      max_animation_seconds: MAX_GIF_SECONDS,
    },
  };
}
