/**
 * Stream mapping: which streams of the upload go into the output and how (copied, converted or
 * dropped with a reason), so that nothing is lost that the user did not ask to lose.
 *
 * @module
 */
import { type CodecRule, type OutputFormat, pcmFor } from "./formats.ts";
import type { MediaInfo, StreamInfo } from "./probe.ts";

/** A stream left out of the output, named in the result's `stats.dropped`. */
export interface DroppedStream {
  stream?: number;
  type: string;
  codec?: string;
  count?: number;
  reason: string;
}

/** How the main video stream is written; absent: the output has no video. */
export interface MainVideo {
  /** Encoder options (`-c:v libx264 -crf 20 …`), or `copy`. */
  codecArgs: readonly string[] | "copy";
  /** The filter chain for the main video. */
  filter?: string;
  /**
   * The stream to take instead of the input's main video (`1:0`: an encode of it given as a
   * second input); with `codecArgs: "copy"`.
   */
  from?: string;
}

/** Options of {@linkcode mapStreams}. */
export interface MapStreamsOptions {
  format: OutputFormat;
  /** The main video's treatment; absent for sound-only outputs. */
  mainVideo?: MainVideo;
  /** Whether an audio track that the container takes may be copied; default: always. */
  copyAudio?: (stream: StreamInfo) => boolean;
  /** Audio rule instead of the format's (compress's choice of encoder, bitrate and copies). */
  audio?: CodecRule;
  /** Audio tracks to include; default all the format carries. */
  audioStreams?: StreamInfo[];
  /** Remove global, stream and chapter metadata (location included); languages stay. */
  stripMetadata?: boolean;
}

/** The ffmpeg output options of a mapping, and what it leaves out. */
export interface StreamMapping {
  args: string[];
  dropped: DroppedStream[];
}

/** Subtitle codecs that are text, and so can be converted to another text format. */
const TEXT_SUBTITLES = new Set([
  "subrip",
  "srt",
  "ass",
  "ssa",
  "mov_text",
  "webvtt",
  "text",
  "microdvd",
  "subviewer",
  "subviewer1",
  "realtext",
  "sami",
  "stl",
  "pjs",
  "vplayer",
  "jacosub",
  "mpl2",
]);

/** Cover-art codecs the MP4 family and Matroska carry. */
const COVER_ART_CODECS = ["mjpeg", "png"];

/**
 * Builds the `-map`/`-c` options that keep every stream the format can carry: the main video as
 * `mainVideo` says, other pictures and second angles, every audio track (copied where the
 * container takes it, else re-encoded), every subtitle track (copied, converted to the format's
 * text format, or dropped when it is a bitmap the format cannot hold), attachments, chapters and
 * metadata. Languages, titles and dispositions travel with each stream.
 */
export function mapStreams(info: MediaInfo, options: MapStreamsOptions): StreamMapping {
  const mapping: Mapping = { args: [], dropped: [], counts: { v: 0, a: 0, s: 0, t: 0 } };
  const { format } = options;
  const main = info.video;
  // The main video first, so that it is output stream v:0 whatever the input's order.
  const streams = main ? [main, ...info.streams.filter((s) => s !== main)] : info.streams;
  for (const stream of streams) {
    if (stream === main) mapMainVideo(mapping, stream, options);
    else if (stream.type === "video") mapOtherVideo(mapping, stream, format, options);
    else if (stream.type === "audio") mapAudio(mapping, stream, info, options);
    else if (stream.type === "subtitle") mapSubtitle(mapping, stream, format);
    else if (stream.type === "attachment") mapAttachment(mapping, stream, format);
    else {
      drop(mapping, stream, `${format.format} carries no ${stream.type} streams`);
    }
  }
  mapping.args.push(...metadataArgs(info, options, mapping));
  return { args: mapping.args, dropped: mapping.dropped };
}

interface Mapping extends StreamMapping {
  /** Output streams so far, by type, for per-stream options such as `-c:a:2`. */
  counts: { v: number; a: number; s: number; t: number };
}

function drop(mapping: Mapping, stream: StreamInfo, reason: string): void {
  mapping.dropped.push({ stream: stream.index, type: stream.type, codec: stream.codec, reason });
}

/** Adds `-map` for `stream` and returns its output index among its type. */
function add(mapping: Mapping, stream: StreamInfo, type: "v" | "a" | "s" | "t"): number {
  mapping.args.push("-map", `0:${stream.index}`);
  return mapping.counts[type]++;
}

function mapMainVideo(mapping: Mapping, stream: StreamInfo, options: MapStreamsOptions): void {
  const video = options.mainVideo;
  if (!video || !options.format.video) {
    drop(mapping, stream, `${options.format.format} is a sound-only format`);
    return;
  }
  let k: number;
  if (video.from) {
    mapping.args.push("-map", video.from);
    k = mapping.counts.v++;
  } else k = add(mapping, stream, "v");
  if (video.codecArgs === "copy") mapping.args.push(`-c:v:${k}`, "copy");
  else {
    // Options without a stream specifier reach every encoder; -c and the filter are this stream's.
    const [flag, encoder, ...rest] = video.codecArgs;
    if (flag !== "-c:v" || !encoder) throw new Error("codecArgs must start with -c:v ENCODER");
    mapping.args.push(`-c:v:${k}`, encoder, ...rest);
    if (video.filter) mapping.args.push(`-filter:v:${k}`, video.filter);
  }
}

function mapOtherVideo(
  mapping: Mapping,
  stream: StreamInfo,
  format: OutputFormat,
  options: MapStreamsOptions,
): void {
  if (stream.attachedPicture) {
    if (format.coverArt && COVER_ART_CODECS.includes(stream.codec)) {
      const k = add(mapping, stream, "v");
      mapping.args.push(`-c:v:${k}`, "copy", `-disposition:v:${k}`, "attached_pic");
    } else drop(mapping, stream, `${format.format} cannot carry this cover art`);
    return;
  }
  // A second angle: kept as it is where the container takes the codec and more than one video.
  if (format.video?.copy.includes(stream.codec) && format.multiAudio && options.mainVideo) {
    const k = add(mapping, stream, "v");
    mapping.args.push(`-c:v:${k}`, "copy");
  } else drop(mapping, stream, "only the main video stream is processed into this format");
}

function mapAudio(
  mapping: Mapping,
  stream: StreamInfo,
  info: MediaInfo,
  options: MapStreamsOptions,
): void {
  const { format } = options;
  const wanted = options.audioStreams ?? info.streams.filter((s) => s.type === "audio");
  if (!format.audio || !wanted.includes(stream)) {
    drop(mapping, stream, `${format.format} carries no sound`);
    return;
  }
  if (!format.multiAudio && mapping.counts.a > 0) {
    drop(mapping, stream, `${format.format} carries one audio track`);
    return;
  }
  const k = add(mapping, stream, "a");
  const rule = options.audio ?? format.audio;
  const copy = rule.copy.includes(stream.codec) &&
    (options.copyAudio?.(stream) ?? true) && fitsFormat(stream, format);
  if (copy) {
    mapping.args.push(`-c:a:${k}`, "copy");
    return;
  }
  const encoder = pcmFor(format, stream.bitsPerSample) ?? rule.encoder;
  mapping.args.push(`-c:a:${k}`, encoder, ...rule.args);
  if (format.sampleRate) mapping.args.push(`-ar:a:${k}`, String(format.sampleRate));
  if (format.maxChannels) mapping.args.push(`-ac:a:${k}`, String(format.maxChannels));
}

/** A copied track must already have the sample rate and channels the format requires. */
function fitsFormat(stream: StreamInfo, format: OutputFormat): boolean {
  if (format.sampleRate && stream.sampleRate !== format.sampleRate) return false;
  return !format.maxChannels || (stream.channels ?? 1) <= format.maxChannels;
}

function mapSubtitle(mapping: Mapping, stream: StreamInfo, format: OutputFormat): void {
  const rule = format.subtitles;
  if (!rule) {
    drop(mapping, stream, `${format.format} cannot carry subtitles`);
    return;
  }
  if (rule.copy.includes(stream.codec)) {
    const k = add(mapping, stream, "s");
    mapping.args.push(`-c:s:${k}`, "copy");
  } else if (TEXT_SUBTITLES.has(stream.codec) && TEXT_SUBTITLES.has(rule.codec)) {
    const k = add(mapping, stream, "s");
    mapping.args.push(`-c:s:${k}`, rule.encoder);
  } else {
    const why = TEXT_SUBTITLES.has(stream.codec) ? "text" : "bitmap";
    drop(mapping, stream, `${format.format} cannot carry ${why} subtitles of this kind`);
  }
}

function mapAttachment(mapping: Mapping, stream: StreamInfo, format: OutputFormat): void {
  if (!format.attachments) {
    drop(mapping, stream, `${format.format} cannot carry attachments such as fonts`);
    return;
  }
  const k = add(mapping, stream, "t");
  mapping.args.push(`-c:t:${k}`, "copy");
}

/** Global metadata and chapters kept (or stripped, languages excepted). */
function metadataArgs(info: MediaInfo, options: MapStreamsOptions, mapping: Mapping): string[] {
  const chapters = info.chapters ?? 0;
  if (chapters > 0 && !options.format.chapters) {
    mapping.dropped.push({
      type: "chapters",
      count: chapters,
      reason: `${options.format.format} cannot carry chapters`,
    });
  }
  const strip = options.stripMetadata ?? false;
  const args = strip
    ? ["-map_metadata", "-1", "-map_chapters", "0", "-fflags", "+bitexact"]
    : ["-map_metadata", "0", "-map_chapters", "0"];
  const titlesAsHandlers = MP4_MUXERS.includes(options.format.muxer);
  for (const { stream, spec } of outputStreams(info, mapping.args)) {
    // Languages are not personal data and players need them: put them back when stripping.
    if (strip && stream.language) args.push(`-metadata:s:${spec}`, `language=${stream.language}`);
    // A Matroska attachment needs its file name and MIME type: a font's, not the user's.
    if (strip && spec.startsWith("t:")) args.push(`-map_metadata:s:${spec}`, `0:s:${stream.index}`);
    // MP4 keeps a track's name only as its handler name.
    if (!strip && titlesAsHandlers && stream.title) {
      args.push(`-metadata:s:${spec}`, `handler_name=${stream.title}`);
    }
  }
  return args;
}

/** Muxers of the MP4 family, which store a track title as the handler name. */
const MP4_MUXERS = ["mp4", "mov", "3gp", "3g2", "ipod"];

/** The mapped input streams with their output specifiers (`a:1`), from the `-map` options. */
function outputStreams(info: MediaInfo, args: string[]): { stream: StreamInfo; spec: string }[] {
  const types: Record<string, string> = { video: "v", audio: "a", subtitle: "s", attachment: "t" };
  const counts: Record<string, number> = {};
  return args.flatMap((arg, i) => {
    if (arg !== "-map") return [];
    const index = Number(args[i + 1]!.slice(2));
    const stream = info.streams.find((s) => s.index === index)!;
    const type = types[stream.type] ?? "d";
    const k = counts[type] = (counts[type] ?? -1) + 1;
    return [{ stream, spec: `${type}:${k}` }];
  });
}
