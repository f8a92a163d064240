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
  ];
  for (const [key, value] of fields) if (value !== undefined) Object.assign(info, { [key]: value });
  if (info.type === "video") info.rotation = rotationOf(stream);
  const disposition = (stream.disposition ?? {}) as Json;
  if (disposition.attached_pic === 1) info.attachedPicture = true;
  return info;
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
  };
  const video = streams.find((s) => s.type === "video" && !s.attachedPicture);
  const audio = streams.find((s) => s.type === "audio");
  if (video) info.video = video;
  if (audio) info.audio = audio;
  return info;
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
    ...(options.inputArgs ?? ["-i", path]),
  ], options.signal);
  return parseProbe(text);
}
