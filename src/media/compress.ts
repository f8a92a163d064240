import { MmpError } from "../protocol/errors.ts";
import { FfmpegError, runFfmpeg } from "./ffmpeg.ts";
import { availableEncoders, type Encoder, ENCODERS } from "./encoders.ts";
import { inputArgs, type JobContext, type JobOutput, type Operation } from "./operation.ts";
import { type MediaInfo, probe } from "./probe.ts";
import { measureSsim } from "./ssim.ts";
import { muxerArgs, requireVideo } from "./video.ts";

const QUALITIES = ["high", "balanced", "small"] as const;
/** A named quality level. */
export type CompressQuality = typeof QUALITIES[number];
const CODECS = ["av1", "hevc", "h264"] as const;
type Codec = typeof CODECS[number];

/**
 * Quality levels are anchored on x264's familiar CRF scale, measured per video: the target SSIM is
 * what x264 (preset medium) reaches on this video's samples at the anchor CRF, plus an offset.
 */
export const QUALITY_TARGETS: Readonly<
  Record<CompressQuality, { anchorCrf: number; offset: number }>
> = {
  high: { anchorCrf: 18, offset: 0 },
  balanced: { anchorCrf: 23, offset: -0.003 },
  small: { anchorCrf: 28, offset: 0 },
};

/** Sampling: videos up to WHOLE_SECONDS are probed whole, longer ones in fixed samples. */
const WHOLE_SECONDS = 10;
const SAMPLE_SECONDS = 2;
const SAMPLE_POSITIONS = [0.15, 0.38, 0.62, 0.85];
/** At most this many probe encodes per candidate encoder. */
const MAX_PROBES = 4;
/** A candidate must encode at least this fast (media seconds per wall second) to be chosen. */
const MIN_SPEED = 1;
/** Audio at or below this bitrate in an efficient codec is kept as it is. */
const EFFICIENT_AUDIO_BPS = 160_000;

/** The validated arguments of a compress request. */
export interface CompressRequest {
  quality: CompressQuality;
  codec?: Codec;
}

/** One probe encode of the samples. */
export interface Probe {
  codec: Codec;
  crf: number;
  ssim: number;
  bytes: number;
  /** Media seconds encoded per wall-clock second. */
  speed: number;
}

function oneOf<T extends string>(
  value: unknown,
  allowed: readonly T[],
  name: string,
): T | undefined {
  if (value === undefined) return undefined;
  if (allowed.includes(value as T)) return value as T;
  throw new MmpError("BAD_REQUEST", `Invalid compress ${name}`, {
    solution: `Use one of: ${allowed.join(", ")}`,
  });
}

/** Validates `quality` (default `balanced`) and the optional `codec` override. */
export function parseCompress(args: Record<string, unknown>): CompressRequest {
  const request: CompressRequest = {
    quality: oneOf(args.quality, QUALITIES, "quality") ?? "balanced",
  };
  const codec = oneOf(args.codec, CODECS, "codec");
  if (codec) request.codec = codec;
  return request;
}

/** Output container: MKV and WEBM inputs keep theirs, everything else becomes MP4. */
function containerFor(extension: string): "mp4" | "mkv" | "webm" {
  return extension === "mkv" || extension === "webm" ? extension : "mp4";
}

/** Audio: efficient tracks are copied, wasteful ones (PCM, AC-3, FLAC, high bitrates) re-encoded. */
export function compressAudioArgs(info: MediaInfo, container: string): string[] {
  const audio = info.audio;
  if (!audio) return [];
  const map = ["-map", `0:${audio.index}`];
  const copyable = container === "mp4"
    ? ["aac", "mp3"]
    : container === "webm"
    ? ["opus", "vorbis"]
    : [
      "aac",
      "mp3",
      "opus",
      "vorbis",
    ];
  const efficient = (audio.bitRate ?? 0) <= EFFICIENT_AUDIO_BPS;
  if (efficient && copyable.includes(audio.codec)) return [...map, "-c:a", "copy"];
  return container === "mp4"
    ? [...map, "-c:a", "aac", "-b:a", "128k"]
    : [...map, "-c:a", "libopus", "-b:a", "96k"];
}

/** The lossless sample file, its media seconds, and ffprobe's view of it. */
interface Samples {
  path: string;
  seconds: number;
  info: MediaInfo;
}

/** Cuts the samples into one lossless file, so every probe is scored against the same frames. */
async function extractSamples(ctx: JobContext): Promise<Samples> {
  const duration = ctx.info.duration;
  const whole = duration <= WHOLE_SECONDS;
  const starts = whole ? [0] : SAMPLE_POSITIONS.map((f) => f * duration - SAMPLE_SECONDS / 2);
  const length = whole ? Math.max(duration, 0.04) : SAMPLE_SECONDS;
  // A whole video is read without seeking: ffmpeg 5.1 writes a broken file after `-ss 0` on FLV.
  const inputs = whole ? inputArgs(ctx.input, ctx.demuxer) : starts.flatMap((start) => [
    "-ss",
    start.toFixed(3),
    "-t",
    length.toFixed(3),
    ...inputArgs(ctx.input, ctx.demuxer),
  ]);
  const video = ctx.info.video!.index;
  const streams = starts.map((_, i) => `[${i}:${video}]`).join("");
  const path = ctx.files.path("samples.mkv");
  await runFfmpeg([
    ...inputs,
    "-filter_complex",
    `${streams}concat=n=${starts.length}:v=1:a=0,format=yuv420p[v]`,
    "-map",
    "[v]",
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-qp",
    "0",
    "-fps_mode",
    "passthrough",
    path,
  ], { ffmpeg: ctx.tools.ffmpeg, signal: ctx.signal });
  const info = await probe(path, { ffprobe: ctx.tools.ffprobe, signal: ctx.signal });
  return { path, seconds: starts.length * length, info };
}

/** Searches one encoder's CRF for the smallest encode that reaches the target. */
class Search {
  readonly probes: Probe[] = [];
  #ctx: JobContext;
  #samples: Samples;
  #onProbe: () => void;

  constructor(ctx: JobContext, samples: Samples, onProbe: () => void) {
    this.#ctx = ctx;
    this.#samples = samples;
    this.#onProbe = onProbe;
  }

  /** Encodes the samples at `crf` and scores them. */
  async probe(encoder: Encoder, crf: number): Promise<Probe> {
    const known = this.probes.find((p) => p.codec === encoder.codec && p.crf === crf);
    if (known) return known;
    const path = this.#ctx.files.path(`probe-${encoder.codec}-${crf}.mkv`);
    const started = performance.now();
    // deno-fmt-ignore
    await runFfmpeg([
      ...inputArgs(this.#samples.path), ...encoder.args(crf), "-pix_fmt", "yuv420p",
      "-fps_mode", "passthrough", "-an", path,
    ], { ffmpeg: this.#ctx.tools.ffmpeg, signal: this.#ctx.signal });
    const seconds = (performance.now() - started) / 1000;
    const video = this.#samples.info.video!;
    const ssim = await measureSsim(path, this.#samples.path, {
      ffmpeg: this.#ctx.tools.ffmpeg,
      frameRate: video.frameRate ?? 25,
      width: video.width!,
      height: video.height!,
      signal: this.#ctx.signal,
    });
    const { size } = await Deno.stat(path);
    await Deno.remove(path);
    const result = {
      codec: encoder.codec,
      crf,
      ssim,
      bytes: size,
      speed: this.#samples.seconds / Math.max(seconds, 0.001),
    };
    this.probes.push(result);
    this.#onProbe();
    return result;
  }

  /** The highest CRF reaching `target` within the probe budget, or the best quality tried. */
  async find(encoder: Encoder, target: number): Promise<Probe> {
    let crf = encoder.startCrf;
    for (let i = 0; i < MAX_PROBES; i++) {
      await this.probe(encoder, crf);
      const next = this.#nextCrf(encoder, target);
      if (next === undefined) break;
      crf = next;
    }
    return this.#best(encoder, target);
  }

  #mine(encoder: Encoder): Probe[] {
    return this.probes.filter((p) => p.codec === encoder.codec).sort((a, b) => a.crf - b.crf);
  }

  #best(encoder: Encoder, target: number): Probe {
    const mine = this.#mine(encoder);
    const passing = mine.filter((p) => p.ssim >= target);
    return passing.at(-1) ?? mine[0]!;
  }

  /** SSIM lost per CRF step: measured from the two nearest probes once there are two. */
  #slope(encoder: Encoder, mine: Probe[], target: number): number {
    if (mine.length < 2) return encoder.ssimPerCrf;
    const [a, b] = [...mine].sort((x, y) => Math.abs(x.ssim - target) - Math.abs(y.ssim - target))
      .slice(0, 2).sort((x, y) => x.crf - y.crf);
    const slope = (a!.ssim - b!.ssim) / (b!.crf - a!.crf);
    return slope > 1e-5 ? slope : encoder.ssimPerCrf;
  }

  /** Secant step between the nearest passing and failing probes; undefined when done. */
  #nextCrf(encoder: Encoder, target: number): number | undefined {
    const mine = this.#mine(encoder);
    const pass = mine.filter((p) => p.ssim >= target).at(-1);
    const fail = mine.find((p) => p.ssim < target && (!pass || p.crf > pass.crf));
    if (pass && Math.abs(pass.ssim - target) < 0.001) return undefined;
    let next: number;
    if (pass && fail) {
      if (fail.crf - pass.crf <= 1) return undefined;
      const t = (pass.ssim - target) / Math.max(pass.ssim - fail.ssim, 1e-6);
      next = Math.round(pass.crf + t * (fail.crf - pass.crf));
      next = Math.min(fail.crf - 1, Math.max(pass.crf + 1, next));
    } else {
      const from = (pass ?? fail)!;
      const step = Math.round((from.ssim - target) / this.#slope(encoder, mine, target));
      next = from.crf + (step === 0 ? (pass ? 1 : -1) : Math.max(-8, Math.min(8, step)));
      next = Math.min(encoder.maxCrf, Math.max(encoder.minCrf, next));
    }
    return mine.some((p) => p.crf === next) ? undefined : next;
  }
}

/**
 * Finds each candidate's best probe. H.264 is searched only when nothing else clearly wins: its
 * anchor probe already tells its size near the target, and each probe costs a sample encode.
 */
async function searchEncoders(
  search: Search,
  encoders: Encoder[],
  target: number,
  reference: Probe,
): Promise<Probe[]> {
  const chosen: Probe[] = [];
  for (const encoder of encoders) {
    const leader = choose(chosen, target);
    if (encoder.codec === "h264" && leader && leader.bytes < reference.bytes * 0.8) {
      if (reference.ssim >= target) chosen.push(reference);
      continue;
    }
    try {
      chosen.push(await search.find(encoder, target));
    } catch (err) {
      if (!(err instanceof FfmpegError)) throw err; // an encoder that cannot take this input
    }
  }
  return chosen;
}

/** The encoders to try: the request's codec, or AV1 and H.264; WEBM can only take AV1. */
async function candidates(ctx: JobContext, request: CompressRequest, container: string) {
  const have = await availableEncoders(ctx.tools.ffmpeg);
  const wanted = request.codec ? [request.codec] : ["av1", "h264"];
  return ENCODERS.filter((e) =>
    wanted.includes(e.codec) && have.has(e.encoder) && (container !== "webm" || e.codec === "av1")
  );
}

/** Result that is the upload itself: never bigger than what came in. */
function keepInput(ctx: JobContext, stats: Record<string, unknown>, reason: string): JobOutput {
  return {
    path: ctx.input,
    format: ctx.inputExtension,
    stats: { ...stats, codec: ctx.info.video?.codec ?? "unknown", kept_input: true, reason },
  };
}

async function compressVideo(request: CompressRequest, ctx: JobContext): Promise<JobOutput> {
  const video = requireVideo(ctx.info, "compress");
  const started = performance.now();
  const inputBytes = (await Deno.stat(ctx.input)).size;
  let container = containerFor(ctx.inputExtension);
  let encoders = await candidates(ctx, request, container);
  if (encoders.length === 0 && container === "webm") {
    container = "mkv";
    encoders = await candidates(ctx, request, container);
  }
  const budget = (encoders.length + 1) * MAX_PROBES;
  const samples = await extractSamples(ctx);
  const search = new Search(ctx, samples, () => {
    ctx.onProgress(0.05 + 0.25 * Math.min(1, search.probes.length / budget));
  });
  const anchor = QUALITY_TARGETS[request.quality];
  const h264 = ENCODERS.find((e) => e.codec === "h264")!;
  const reference = await search.probe(h264, anchor.anchorCrf);
  const target = Math.min(0.999, reference.ssim + anchor.offset);
  const chosen = await searchEncoders(search, encoders, target, reference);
  const stats: Record<string, unknown> = {
    quality: request.quality,
    target_ssim: round(target),
    probe_count: search.probes.length,
    probes: search.probes.map((p) => ({ ...p, ssim: round(p.ssim), speed: round(p.speed, 2) })),
  };
  const pick = choose(chosen, target);
  if (!pick) return keepInput(ctx, stats, "no encoder could take this input");
  Object.assign(stats, { codec: pick.codec, crf: pick.crf, ssim: round(pick.ssim) });

  const predicted = (pick.bytes / samples.seconds) * ctx.info.duration;
  if (predicted >= inputBytes * 0.98) return keepInput(ctx, stats, "no encode beats the input");

  const encoder = ENCODERS.find((e) => e.codec === pick.codec)!;
  const output = ctx.files.path(`out.${container}`);
  // deno-fmt-ignore
  await runFfmpeg([
    ...inputArgs(ctx.input, ctx.demuxer), "-map", `0:${video.index}`, ...encoder.args(pick.crf),
    "-pix_fmt", "yuv420p", "-fps_mode", "passthrough", ...compressAudioArgs(ctx.info, container),
    "-map_metadata", "0", "-map_chapters", "0", ...muxerArgs(container),
    "-fs", String(ctx.maxOutputBytes), output,
  ], {
    ffmpeg: ctx.tools.ffmpeg,
    signal: ctx.signal,
    durationSeconds: ctx.info.duration,
    onProgress: (f) => ctx.onProgress(0.3 + 0.7 * f),
  });
  const outputBytes = (await Deno.stat(output)).size;
  stats.seconds = round((performance.now() - started) / 1000, 2);
  if (outputBytes >= inputBytes) {
    await Deno.remove(output);
    return keepInput(ctx, stats, "the encode came out larger than the input");
  }
  stats.size_ratio = round(outputBytes / inputBytes);
  return { path: output, format: container, stats: { ...stats, kept_input: false } };
}

/** Smallest passing candidate that keeps up with realtime; else the fastest passing one. */
export function choose(probes: Probe[], target: number): Probe | undefined {
  const passing = probes.filter((p) => p.ssim >= target);
  const pool = passing.length > 0 ? passing : probes;
  const fast = pool.filter((p) => p.speed >= MIN_SPEED);
  if (fast.length > 0) return fast.reduce((a, b) => (b.bytes < a.bytes ? b : a));
  return pool.reduce<Probe | undefined>((a, b) => (!a || b.speed > a.speed ? b : a), undefined);
}

function round(value: number, digits = 4): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/** `{"op":"compress","quality"?:"high"|"balanced"|"small","codec"?:"av1"|"hevc"|"h264"}`. */
export const compress: Operation = {
  name: "compress",
  keys: ["quality", "codec"],
  parse(args) {
    const request = parseCompress(args);
    return { run: (ctx) => compressVideo(request, ctx) };
  },
};
