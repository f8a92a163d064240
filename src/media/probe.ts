import { runForOutput } from "./ffmpeg.ts";

/** One stream of a probed file, with the fields the operations use. */
export interface StreamInfo {
  index: number;
  type: "video" | "audio" | "subtitle" | "data" | "attachment" | string;
  codec: string;
  width?: number;
  height?: number;
  /** Sample aspect ratio as a number (1 for square pixels). */
  sampleAspect?: number;
  /** Rotation in degrees from the display matrix (0, 90, 180, 270). */
  rotation?: number;
  /** Average frame rate in frames per second. */
  frameRate?: number;
  bitRate?: number;
  channels?: number;
  /** True for cover art and other single-image "video" streams. */
  attachedPicture?: boolean;
  /** Pixel format, such as `yuv420p10le`. */
  pixFmt?: string;
  /** Bits per colour sample of the picture (8, 10, 12), from the pixel format. */
  bitDepth?: number;
  /** Colour description as ffprobe names it (`bt2020`, `arib-std-b67`, `bt2020nc`, `tv`). */
  colorPrimaries?: string;
  colorTransfer?: string;
  colorSpace?: string;
  colorRange?: string;
  /** ISO 639 language tag, such as `eng`. */
  language?: string;
  title?: string;
  /** Dispositions that are set, such as `default`, `forced`. */
  dispositions?: string[];
  /** Sample rate of an audio stream, in Hz. */
  sampleRate?: number;
  /** Bits per sample of a PCM/lossless audio stream, when known. */
  bitsPerSample?: number;
  /** HDR10 static metadata of a PQ video (read from the stream or its first frame). */
  hdr?: HdrMetadata;
}

/** HDR10 static metadata: SMPTE ST 2086 mastering display and content light level. */
export interface HdrMetadata {
  /** Chromaticity coordinates (CIE 1931 x, y) of the primaries and white point. */
  mastering?: {
    red: [number, number];
    green: [number, number];
    blue: [number, number];
    white: [number, number];
    /** Luminance in cd/m². */
    maxLuminance: number;
    minLuminance: number;
  };
  /** Maximum content and maximum frame-average light level in cd/m². */
  contentLight?: { maxContent: number; maxAverage: number };
}

/** What ffprobe says about an uploaded file. */
export interface MediaInfo {
  /** ffprobe's demuxer name list, such as `mov,mp4,m4a,3gp,3g2,mj2`. */
  formatName: string;
  /** Duration in seconds; 0 when unknown. */
  duration: number;
  size: number;
  bitRate: number;
  streams: StreamInfo[];
  /** The main video stream (not cover art), if any. */
  video?: StreamInfo;
  /** The first audio stream, if any. */
  audio?: StreamInfo;
  /** How many chapters the file has. */
  chapters?: number;
}

/** Options of {@linkcode probe}. */
export interface ProbeOptions {
  ffprobe: string;
  signal?: AbortSignal;
  /** ffprobe input options, `-i` included; default `-i PATH`. */
  inputArgs?: string[];
}

type Json = Record<string, unknown>;

function num(value: unknown): number | undefined {
  const n = typeof value === "string" ? Number(value) : value;
  return typeof n === "number" && Number.isFinite(n) ? n : undefined;
}

function ratio(value: unknown): number | undefined {
  if (typeof value !== "string") return undefined;
  const [a, b] = value.split(/[:/]/).map(Number);
  return a && b && Number.isFinite(a / b) ? a / b : undefined;
}

function rotationOf(stream: Json): number {
  const sideData = Array.isArray(stream.side_data_list) ? stream.side_data_list as Json[] : [];
  const fromMatrix = sideData.map((d) => num(d.rotation)).find((r) => r !== undefined);
  const tags = (stream.tags ?? {}) as Json;
  const degrees = fromMatrix ?? num(tags.rotate) ?? 0;
  return ((Math.round(degrees / 90) * 90) % 360 + 360) % 360;
}

function toStream(stream: Json): StreamInfo {
  const info: StreamInfo = {
    index: num(stream.index) ?? 0,
    type: String(stream.codec_type ?? "data"),
    codec: String(stream.codec_name ?? "unknown"),
  };
  const fields: [keyof StreamInfo, number | undefined][] = [
    ["width", num(stream.width)],
    ["height", num(stream.height)],
    ["sampleAspect", ratio(stream.sample_aspect_ratio)],
    ["frameRate", ratio(stream.avg_frame_rate) ?? ratio(stream.r_frame_rate)],
    ["bitRate", num(stream.bit_rate)],
    ["channels", num(stream.channels)],
    ["sampleRate", num(stream.sample_rate)],
    ["bitsPerSample", num(stream.bits_per_raw_sample) || num(stream.bits_per_sample) || undefined],
  ];
  for (const [key, value] of fields) if (value !== undefined) Object.assign(info, { [key]: value });
  if (info.type === "video") {
    info.rotation = rotationOf(stream);
    Object.assign(info, colourOf(stream));
  }
  const tags = (stream.tags ?? {}) as Json;
  if (typeof tags.language === "string") info.language = tags.language;
  if (typeof tags.title === "string") info.title = tags.title;
  const disposition = (stream.disposition ?? {}) as Json;
  if (disposition.attached_pic === 1) info.attachedPicture = true;
  const set = Object.keys(disposition).filter((key) => disposition[key] === 1);
  if (set.length > 0) info.dispositions = set;
  return info;
}

/** Pixel format, its bit depth and the colour description ffprobe reports (unknowns left out). */
function colourOf(stream: Json): Partial<StreamInfo> {
  const colour: Partial<StreamInfo> = {};
  const known = (value: unknown) =>
    typeof value === "string" && value !== "unknown" && value !== "reserved" ? value : undefined;
  const pixFmt = known(stream.pix_fmt);
  if (pixFmt) {
    colour.pixFmt = pixFmt;
    colour.bitDepth = bitDepthOf(pixFmt);
  }
  const pairs: [keyof StreamInfo, unknown][] = [
    ["colorPrimaries", stream.color_primaries],
    ["colorTransfer", stream.color_transfer],
    ["colorSpace", stream.color_space],
    ["colorRange", stream.color_range],
  ];
  for (const [key, value] of pairs) {
    const text = known(value);
    if (text) Object.assign(colour, { [key]: text });
  }
  return colour;
}

/** Bits per sample of a pixel format: `yuv420p10le` → 10, `p010le` → 10, `yuv420p` → 8. */
export function bitDepthOf(pixFmt: string): number {
  const match = /(?:p|gray|^y)(\d{2})(?:le|be)$/.exec(pixFmt) ??
    /^p0(\d{2})(?:le|be)$/.exec(pixFmt);
  const bits = Number(match?.[1]);
  return bits >= 9 && bits <= 16 ? bits : 8;
}

/** Parses ffprobe's `-print_format json -show_format -show_streams` output. */
export function parseProbe(text: string): MediaInfo {
  const json = JSON.parse(text) as Json;
  const format = (json.format ?? {}) as Json;
  const streams = (Array.isArray(json.streams) ? json.streams as Json[] : []).map(toStream);
  const info: MediaInfo = {
    formatName: String(format.format_name ?? ""),
    duration: num(format.duration) ?? 0,
    size: num(format.size) ?? 0,
    bitRate: num(format.bit_rate) ?? 0,
    streams,
    chapters: Array.isArray(json.chapters) ? json.chapters.length : 0,
  };
  const video = streams.find((s) => s.type === "video" && !s.attachedPicture);
  const audio = streams.find((s) => s.type === "audio");
  if (video) info.video = video;
  if (audio) info.audio = audio;
  return info;
}

/** Reads HDR10 metadata from ffprobe's side data entries, if there is any. */
export function hdrFrom(sideData: Json[]): HdrMetadata | undefined {
  const hdr: HdrMetadata = {};
  const at = (d: Json, key: string) => ratio(d[key]) ?? (d[key] === "0/1" ? 0 : undefined);
  for (const d of sideData) {
    if (d.side_data_type === "Mastering display metadata") {
      const pair = (c: string): [number, number] => [at(d, `${c}_x`) ?? 0, at(d, `${c}_y`) ?? 0];
      const max = at(d, "max_luminance");
      if (max === undefined) continue;
      hdr.mastering = {
        red: pair("red"),
        green: pair("green"),
        blue: pair("blue"),
        white: pair("white_point"),
        maxLuminance: max,
        minLuminance: at(d, "min_luminance") ?? 0,
      };
    } else if (d.side_data_type === "Content light level metadata") {
      hdr.contentLight = {
        maxContent: num(d.max_content) ?? 0,
        maxAverage: num(d.max_average) ?? 0,
      };
    }
  }
  return hdr.mastering || hdr.contentLight ? hdr : undefined;
}

/**
 * HDR10 metadata of a PQ video: from the container when it stores it, else from the first frame
 * (HEVC and AV1 carry it in the bitstream, where -show_streams does not look).
 */
async function probeHdr(
  text: string,
  video: StreamInfo,
  options: ProbeOptions,
  path: string,
): Promise<HdrMetadata | undefined> {
  const streams = (JSON.parse(text) as Json).streams as Json[] | undefined;
  const own = streams?.find((s) => num(s.index) === video.index);
  const fromStream = hdrFrom(Array.isArray(own?.side_data_list) ? own.side_data_list : []);
  if (fromStream) return fromStream;
  const frames = await runForOutput(options.ffprobe, [
    "-v",
    "error",
    "-print_format",
    "json",
    "-select_streams",
    String(video.index),
    "-read_intervals",
    "%+#1",
    "-show_frames",
    ...(options.inputArgs ?? ["-i", path]),
  ], options.signal);
  const first = (((JSON.parse(frames) as Json).frames ?? []) as Json[])[0];
  return hdrFrom(Array.isArray(first?.side_data_list) ? first.side_data_list : []);
}

/** Probes a file with ffprobe. Throws `FfmpegError` when ffprobe cannot read it. */
export async function probe(path: string, options: ProbeOptions): Promise<MediaInfo> {
  const text = await runForOutput(options.ffprobe, [
    "-v",
    "error",
    "-print_format",
    "json",
    "-show_format",
    "-show_streams",
    "-show_chapters",
    ...(options.inputArgs ?? ["-i", path]),
  ], options.signal);
  const info = parseProbe(text);
  if (info.video?.colorTransfer === "smpte2084") {
    const hdr = await probeHdr(text, info.video, options, path);
    if (hdr) info.video.hdr = hdr;
  }
  return info;
}
