import { MmpError } from "../protocol/errors.ts";
import { FfmpegError, runFfmpeg, runForOutput } from "./ffmpeg.ts";
import { availableEncoders, type Encoder, ENCODERS } from "./encoders.ts";
import { inputArgs, type JobContext, type JobOutput, type Operation } from "./operation.ts";
import { type MediaInfo, probe, type StreamInfo } from "./probe.ts";
import { measureSsim } from "./ssim.ts";
import { hasLibvmaf } from "./vmaf.ts";
import { canCopyVideo, convertFilm } from "./convert.ts";
import { type CodecRule, OUTPUT_FORMATS, type OutputFormat } from "./formats.ts";
import { mapStreams } from "./streams.ts";
import {
  EVEN_SIDES,
  parseVideoOutput,
  pictureArgs,
  rateArgs,
  requireVideo,
  VIDEO_OUTPUT_KEYS,
} from "./video.ts";

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
  balanced: { anchorCrf: 23, offset: -0.004 },
  small: { anchorCrf: 28, offset: 0 },
};

/**
 * Sampling: the probes see a fifth of the video (1…8 s, in up to 4 pieces of 2 s where it is long
 * enough, spread across it), so the search is a fixed share of short videos and a fixed cost for
 * long ones. Pieces shorter than 2 s would over-weight the keyframe each one starts with. Videos of
 * 2 s or less are probed whole.
 */
const SAMPLE_SHARE = 0.2;
const MIN_SAMPLE_SECONDS = 1;
const MAX_SAMPLE_SECONDS = 8;
const MAX_PIECES = 4;
const MIN_PIECE_SECONDS = 2;
/** At most this many probe encodes per candidate encoder. */
const MAX_PROBES = 4;
/** The search stops once a passing probe is this close to the target (0.001 SSIM at 0.85). */
const CLOSE_ENOUGH_DB = 0.03;
/** Largest single CRF step while the target is not yet bracketed. */
const MAX_STEP = 12;
/**
 * The slower final preset is used only when the job's estimated time stays under this share of
 * realtime: audio, muxing and the transfers come on top, and the speed estimate is rough.
 */
const FINAL_MARGIN = 0.8;
/** A candidate must encode at least this fast (media seconds per wall second) to be chosen. */
const MIN_SPEED = 1;
/**
 * The samples' size predicts the encode only roughly (their content may not be typical): the final
 * encode is skipped only when the prediction is this far above the input, and its actual size is
 * always checked.
 */
const HOPELESS_RATIO = 1.25;
/** Audio at or below this bitrate in an efficient codec is kept as it is. */
const EFFICIENT_AUDIO_BPS = 160_000;

/** The validated arguments of a compress request. */
export interface CompressRequest {
  quality: CompressQuality;
  codec?: Codec;
  /** The container asked for; default: MKV and WEBM keep theirs, the rest become MP4. */
  format?: OutputFormat;
  stripMetadata: boolean;
}

/** One probe encode of the samples. */
export interface Probe {
  codec: Codec;
  crf: number;
  ssim: number;
  /** Size of the encoded samples, keyframes weighted as in a full encode. */
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
    ...parseVideoOutput(args, "compress", COMPRESS_FORMATS),
  };
  const codec = oneOf(args.codec, CODECS, "codec");
  if (codec) request.codec = codec;
  if (codec && request.format && !request.format.video!.copy.includes(codec)) {
    const can = COMPRESS_FORMATS.filter((f) => OUTPUT_FORMATS.get(f)!.video!.copy.includes(codec));
    throw new MmpError("BAD_REQUEST", `${request.format.format} cannot carry ${codec}`, {
      solution: `For ${codec}, use "format" with one of: ${can.join(", ")}`,
    });
  }
  return request;
}

/** Containers compress writes: those that carry AV1, HEVC or H.264 as they are. */
export const COMPRESS_FORMATS: readonly string[] = [
  "mp4",
  "m4v",
  "mov",
  "mkv",
  "webm",
  "ts",
  "m2ts",
  "flv",
  "3gp",
  "3g2",
  "nut",
];

/** Output container by default: MKV and WEBM inputs keep theirs, everything else becomes MP4. */
function containerFor(extension: string, requested?: OutputFormat): OutputFormat {
  if (requested) return requested;
  return OUTPUT_FORMATS.get(extension === "mkv" || extension === "webm" ? extension : "mp4")!;
}

/**
 * Audio: efficient tracks are copied, wasteful ones (PCM, AC-3, FLAC, high bitrates) re-encoded:
 * AAC 128k in the MP4 family, Opus 96k in Matroska and WebM, the container's own codec elsewhere.
 */
export function compressAudioRule(format: OutputFormat): CodecRule {
  const own = format.audio!;
  if (format.muxer === "webm") return { ...own, args: ["-b:a", "96k"] };
  if (format.muxer === "matroska") {
    const copy = ["aac", "mp3", "opus", "vorbis"];
    return { encoder: "libopus", codec: "opus", args: ["-b:a", "96k"], copy };
  }
  if (own.encoder === "aac") return { ...own, args: ["-b:a", "128k"] };
  return own;
}

/** Whether an audio track is already small enough to copy. */
function efficientAudio(stream: StreamInfo): boolean {
  return (stream.bitRate ?? 0) <= EFFICIENT_AUDIO_BPS;
}

/** The lossless sample file, its media seconds, and ffprobe's view of it. */
interface Samples {
  path: string;
  seconds: number;
  info: MediaInfo;
  /** How many pieces were joined: each starts with a keyframe the encoder had to place. */
  pieces: number;
  /** Keyframes a full encode places in as much video as the samples hold. */
  keyframes: number;
}

/** Keyframe interval of the candidates (SVT-AV1 `-g 240`; x264 uses 250), in frames. */
const GOP_FRAMES = 240;

/** Where the sample pieces start and how long each is, in seconds. */
export function samplePlan(duration: number): { starts: number[]; length: number } {
  const total = Math.min(MAX_SAMPLE_SECONDS, Math.max(MIN_SAMPLE_SECONDS, duration * SAMPLE_SHARE));
  if (total * 2 >= duration) return { starts: [0], length: Math.max(duration, 0.04) };
  const pieces = Math.max(1, Math.min(MAX_PIECES, Math.floor(total / MIN_PIECE_SECONDS)));
  const length = total / pieces;
  const starts = Array.from(
    { length: pieces },
    (_, i) => ((i + 0.5) / pieces) * duration - length / 2,
  );
  return { starts, length };
}

/**
 * Samples are stored uncompressed when that takes at most this much disk (720p: 8 s at 30 fps),
 * else as lossless H.264: every probe encode and every score decodes them, and decoding lossless
 * H.264 cost as much as the SSIM itself (measured: 0.5 s against 0.16 s for 2 s of 720p).
 */
const RAW_SAMPLE_BYTES = 512 * 1024 * 1024;

function sampleCodec(info: MediaInfo, seconds: number): string[] {
  const video = info.video!;
  const rawBytes = (video.width ?? 0) * (video.height ?? 0) * 1.5 * (video.frameRate ?? 60) *
    seconds;
  return rawBytes <= RAW_SAMPLE_BYTES
    ? ["-c:v", "rawvideo"]
    : ["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0"];
}

/** Cuts the samples into one lossless file, so every probe is scored against the same frames. */
async function extractSamples(ctx: JobContext): Promise<Samples> {
  const { starts, length } = samplePlan(ctx.info.duration);
  // A whole video is read without seeking: ffmpeg 5.1 writes a broken file after `-ss 0` on FLV.
  const inputs = starts.length === 1 && starts[0] === 0
    ? inputArgs(ctx.input, ctx.demuxer)
    : starts.flatMap((start) => [
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
    `${streams}concat=n=${starts.length}:v=1:a=0,${EVEN_SIDES},format=yuv420p[v]`,
    "-map",
    "[v]",
    ...sampleCodec(ctx.info, starts.length * length),
    "-fps_mode",
    "passthrough",
    path,
  ], { ffmpeg: ctx.tools.ffmpeg, signal: ctx.signal });
  const info = await probe(path, { ffprobe: ctx.tools.ffprobe, signal: ctx.signal });
  const seconds = starts.length * length;
  const duration = Math.max(ctx.info.duration, seconds);
  const fullEncodeKeyframes = Math.max(1, (duration * (info.video?.frameRate ?? 25)) / GOP_FRAMES);
  return {
    path,
    seconds,
    info,
    pieces: starts.length,
    keyframes: (fullEncodeKeyframes * seconds) / duration,
  };
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
      ...inputArgs(this.#samples.path), ...encoder.args(crf, encoder.presets.probe), "-pix_fmt", "yuv420p",
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
    const bytes = await this.#sizeAsInFullEncode(path);
    await Deno.remove(path);
    const result = {
      codec: encoder.codec,
      crf,
      ssim,
      bytes,
      speed: this.#samples.seconds / Math.max(seconds, 0.001),
    };
    this.probes.push(result);
    this.#onProbe();
    return result;
  }

  /**
   * The probe's size with its keyframes counted as a full encode would have them: each sample piece
   * starts with a forced keyframe, which in 2 s pieces would weigh several times more than in the
   * video, and more for some encoders than for others. Other keyframes (scene cuts) count in full.
   */
  async #sizeAsInFullEncode(path: string): Promise<number> {
    // deno-fmt-ignore
    const packets = await runForOutput(this.#ctx.tools.ffprobe, [
      "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=size,flags", "-of", "csv=p=0",
      ...inputArgs(path),
    ], this.#ctx.signal);
    let key = 0, keys = 0, other = 0;
    for (const line of packets.split("\n")) {
      const [size, flags] = line.split(",");
      if (!size) continue;
      if (flags?.startsWith("K")) {
        key += Number(size);
        keys++;
      } else other += Number(size);
    }
    if (keys === 0) return other;
    const sceneCuts = Math.max(0, keys - this.#samples.pieces);
    return Math.round(other + (key / keys) * (sceneCuts + this.#samples.keyframes));
  }

  /** The highest CRF reaching `target` within the probe budget, or the best quality tried. */
  async find(encoder: Encoder, target: number): Promise<Probe> {
    let crf = encoder.startCrf;
    for (let i = 0; i < MAX_PROBES; i++) {
      await this.probe(encoder, crf);
      const next = this.#nextCrf(encoder, ssimDb(target));
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

  /** Decibels lost per CRF step: measured from the two probes nearest the target once there are two. */
  #slope(encoder: Encoder, mine: Probe[], target: number): number {
    if (mine.length < 2) return encoder.dbPerCrf;
    const distance = (p: Probe) => Math.abs(ssimDb(p.ssim) - target);
    const [a, b] = [...mine].sort((x, y) => distance(x) - distance(y)).slice(0, 2)
      .sort((x, y) => x.crf - y.crf);
    const slope = (ssimDb(a!.ssim) - ssimDb(b!.ssim)) / (b!.crf - a!.crf);
    return slope > 0.01 ? slope : encoder.dbPerCrf;
  }

  /**
   * Next CRF, or undefined when done: interpolated between the nearest passing and failing probes,
   * else extrapolated from the one probe nearest the target. Works in decibels (`target` too), where
   * quality is close to linear in CRF.
   */
  #nextCrf(encoder: Encoder, target: number): number | undefined {
    const mine = this.#mine(encoder);
    const db = (p: Probe) => ssimDb(p.ssim);
    const pass = mine.filter((p) => db(p) >= target).at(-1);
    const fail = mine.find((p) => db(p) < target && (!pass || p.crf > pass.crf));
    if (pass && db(pass) - target < CLOSE_ENOUGH_DB) return undefined;
    let next: number;
    if (pass && fail) {
      if (fail.crf - pass.crf <= 1) return undefined;
      const t = (db(pass) - target) / Math.max(db(pass) - db(fail), 1e-6);
      next = Math.round(pass.crf + t * (fail.crf - pass.crf));
      next = Math.min(fail.crf - 1, Math.max(pass.crf + 1, next));
    } else {
      const from = (pass ?? fail)!;
      const step = Math.round((db(from) - target) / this.#slope(encoder, mine, target));
      next = from.crf +
        (step === 0 ? (pass ? 1 : -1) : Math.max(-MAX_STEP, Math.min(MAX_STEP, step)));
      next = Math.min(encoder.maxCrf, Math.max(encoder.minCrf, next));
    }
    return mine.some((p) => p.crf === next) ? undefined : next;
  }
}

/**
 * SSIM as decibels, `-10·log10(1 − SSIM)` (as ffmpeg prints it): 0.99 → 20 dB, 0.999 → 30 dB.
 * CRF moves it about linearly, where raw SSIM crowds towards 1.
 */
export function ssimDb(ssim: number): number {
  return -10 * Math.log10(Math.max(1 - ssim, 1e-6));
}

/**
 * Finds each candidate's best probe. H.264 is searched only when nothing else clearly wins: its
 * anchor probe, moved to the target by the rule of thumb that 6 CRF steps halve x264's size, already
 * tells its size there, and each probe costs a sample encode.
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
    if (encoder.codec === "h264" && leader && leader.bytes < h264BytesAt(reference, target) * 0.8) {
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

/** Rough size of an x264 encode at `target`, from the anchor probe. */
function h264BytesAt(reference: Probe, target: number): number {
  const h264 = ENCODERS.find((e) => e.codec === "h264")!;
  const steps = Math.max(0, (ssimDb(reference.ssim) - ssimDb(target)) / h264.dbPerCrf);
  return reference.bytes * 2 ** (-steps / 6);
}

/** The encoders to try: the request's codec, or AV1 and H.264; WEBM can only take AV1. */
async function candidates(ctx: JobContext, request: CompressRequest, format: OutputFormat) {
  const have = await availableEncoders(ctx.tools.ffmpeg);
  const wanted = request.codec ? [request.codec] : ["av1", "h264"];
  return ENCODERS.filter((e) =>
    wanted.includes(e.codec) && have.has(e.encoder) && format.video!.copy.includes(e.codec)
  );
}

/**
 * Result that is the upload itself: never bigger than what came in. Remuxed (streams copied) when
 * another container or stripped metadata was asked for and the video can be copied into it.
 */
async function keepInput(
  ctx: JobContext,
  request: CompressRequest,
  stats: Record<string, unknown>,
  reason: string,
): Promise<JobOutput> {
  const kept = { ...stats, codec: ctx.info.video?.codec ?? "unknown", kept_input: true, reason };
  const format = request.format ?? OUTPUT_FORMATS.get(ctx.inputExtension);
  const remux = format && (format.format !== ctx.inputExtension || request.stripMetadata);
  if (!remux || !canCopyVideo(ctx.info.video!, format)) {
    return { path: ctx.input, format: ctx.inputExtension, stats: kept };
  }
  const output = await convertFilm({ format, stripMetadata: request.stripMetadata }, ctx);
  return { ...output, stats: { ...output.stats, ...kept } };
}

async function compressVideo(request: CompressRequest, ctx: JobContext): Promise<JobOutput> {
  const video = requireVideo(ctx.info, "compress");
  const started = performance.now();
  const inputBytes = (await Deno.stat(ctx.input)).size;
  let container = containerFor(ctx.inputExtension, request.format);
  let encoders = await candidates(ctx, request, container);
  if (encoders.length === 0 && container.format === "webm" && !request.format) {
    container = OUTPUT_FORMATS.get("mkv")!;
    encoders = await candidates(ctx, request, container);
  }
  const budget = (encoders.length + 1) * MAX_PROBES;
  const anchor = QUALITY_TARGETS[request.quality];
  const h264 = ENCODERS.find((e) => e.codec === "h264")!;
  let samples: Samples, search: Search, reference: Probe;
  try {
    samples = await extractSamples(ctx);
    search = new Search(ctx, samples, () => {
      ctx.onProgress(0.05 + 0.25 * Math.min(1, search.probes.length / budget));
    });
    reference = await search.probe(h264, anchor.anchorCrf);
  } catch (err) {
    // ffprobe read the file, but a full decode failed: the upload is still the best answer.
    if (!(err instanceof FfmpegError)) throw err;
    return await keepInput(
      ctx,
      request,
      { quality: request.quality },
      "the video could not be decoded whole",
    );
  }
  const target = Math.min(0.999, reference.ssim + anchor.offset);
  const chosen = await searchEncoders(search, encoders, target, reference);
  const stats: Record<string, unknown> = {
    quality: request.quality,
    // The search scores SSIM; a VMAF search for ffmpegs with libvmaf is not built yet (issue 11).
    metric: "ssim",
    metric_model: "ffmpeg ssim (All), frames aligned on one time grid",
    libvmaf: await hasLibvmaf(ctx.tools.ffmpeg),
    target_ssim: round(target),
    probe_count: search.probes.length,
    probes: search.probes.map((p) => ({ ...p, ssim: round(p.ssim), speed: round(p.speed, 2) })),
  };
  const pick = choose(chosen, target);
  if (!pick) return await keepInput(ctx, request, stats, "no encoder could take this input");
  Object.assign(stats, { codec: pick.codec, crf: pick.crf, ssim: round(pick.ssim) });

  const predicted = (pick.bytes / samples.seconds) * ctx.info.duration;
  if (predicted >= inputBytes * HOPELESS_RATIO) {
    return await keepInput(ctx, request, stats, "no encode beats the input");
  }

  const encoder = ENCODERS.find((e) => e.codec === pick.codec)!;
  const searchSeconds = (performance.now() - started) / 1000;
  const preset = finalPreset(encoder, pick, ctx.info.duration, searchSeconds);
  Object.assign(stats, { preset, search_seconds: round(searchSeconds, 2) });
  const output = ctx.files.path(`out.${container.format}`);
  const mapping = mapStreams(ctx.info, {
    format: container,
    mainVideo: { codecArgs: encoder.args(pick.crf, preset), filter: EVEN_SIDES },
    audio: compressAudioRule(container),
    copyAudio: efficientAudio,
    stripMetadata: request.stripMetadata,
  });
  if (mapping.dropped.length > 0) stats.dropped = mapping.dropped;
  // deno-fmt-ignore
  await runFfmpeg([
    ...inputArgs(ctx.input, ctx.demuxer), ...mapping.args,
    ...pictureArgs(video, encoder.encoder), ...rateArgs(video, container), ...container.muxerArgs,
    "-fs", String(ctx.maxOutputBytes), "-f", container.muxer, output,
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
    return await keepInput(ctx, request, stats, "the encode came out larger than the input");
  }
  stats.size_ratio = round(outputBytes / inputBytes);
  return { path: output, format: container.format, stats: { ...stats, kept_input: false } };
}

/**
 * The encoder's slower final preset when the whole job still keeps up with realtime with it
 * (judged by the probe's measured speed), else the probe's own preset.
 */
function finalPreset(encoder: Encoder, pick: Probe, duration: number, spent: number): string {
  const { probe, final, slowdown } = encoder.presets;
  const finalSeconds = (duration * slowdown) / Math.max(pick.speed, 0.001);
  return spent + finalSeconds <= (duration / MIN_SPEED) * FINAL_MARGIN ? final : probe;
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
  keys: ["quality", "codec", ...VIDEO_OUTPUT_KEYS],
  parse(args) {
    const request = parseCompress(args);
    return { run: (ctx) => compressVideo(request, ctx) };
  },
};
