import { MmpError } from "../protocol/errors.ts";
import { FfmpegError, runFfmpeg } from "./ffmpeg.ts";
import { availableEncoders, type Encoder, ENCODERS, type Preset } from "./encoders.ts";
import { inputArgs, type JobContext, type JobOutput, type Operation } from "./operation.ts";
import type { StreamInfo } from "./probe.ts";
import { type MetricName, searchMetric } from "./metric.ts";
import { extractSamples, type Lane, type Probe, type Samples, Search } from "./compress_search.ts";
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
 * Quality levels are anchored on x264's familiar CRF scale, measured per video: the target is the
 * score x264 at preset medium (ffmpeg's default) reaches on this video's samples at the anchor CRF.
 * `balanced` is ffmpeg's default itself, with no allowance below it.
 */
export const QUALITY_ANCHORS: Readonly<Record<CompressQuality, number>> = {
  high: 18,
  balanced: 23,
  small: 28,
};

/**
 * What a codec must score above the anchor, in the metric's linear units, to look as good as the
 * anchor under VMAF. On VMAF itself: nothing, it is the judge (the target allows 1 point below for
 * the samples' noise). On SSIM (decibels): how far the SSIM of AV1 and HEVC at the anchor's VMAF sat
 * from x264's, calibrated on the real-footage corpus (`deno task bench:calibrate`, docs/compress.md):
 * from −1.6 dB (a drone shot: SSIM under-rates AV1) to +0.5 dB (an uncompressed handheld source:
 * SSIM over-rates it). The offset is set so that the worst clip still lands within 1 VMAF point of
 * x264 (the target's tolerance); with +0.3 dB (and probes at preset 12) AV1 lost to x264 on 7 of 8
 * clips of a full run, where SSIM under-rates it.
 */
export const METRIC_OFFSETS: Readonly<Record<MetricName, Readonly<Record<Codec, number>>>> = {
  vmaf: { av1: 0, hevc: 0, h264: 0 },
  ssim: { av1: 0.1, hevc: 0.2, h264: 0 },
};

/**
 * How long a job may take. The user waits for the result, so by default the job aims to keep up
 * with the video itself (1× realtime; 1.5× for videos of a minute or more, where the search's
 * fixed cost is small), within 1.5× to 6× the time of ffmpeg's default encode of the video:
 * never less than 1.5× (a 1080p video's default encode is already slower than realtime on
 * 2 cores), never more than 6× (small videos, where x264 is very fast). The time buys SVT-AV1's
 * slower presets, much smaller at equal VMAF (docs/compress.md). `--compress-budget X` sets a
 * fixed multiple instead.
 */
export const TIME_BUDGET = { min: 1.5, max: 6 } as const;
/** Media seconds per wall second the job aims for, by default: short clips, and a minute or more. */
const REALTIME_GOAL = { short: 1, long: 1.5, longFrom: 60 } as const;
/** Share of the budget the engine plans with: the transfers, audio and muxing come on top. */
const PLANNING_SHARE = 0.9;
/** Probes a lane is expected to need, to plan its preset. */
const EXPECTED_PROBES = 2;
/** At most this many probe encodes per candidate encoder. */
const MAX_PROBES = 4;
/** Between a passing and a failing probe this close, the CRF is interpolated rather than probed. */
const INTERPOLATE_SPAN = 4;
/**
 * The samples' size predicts the encode only roughly (their content may not be typical): the input
 * is kept early only when a probe below the target already predicts this much more than the input.
 * The final encode's actual size is always checked.
 */
const HOPELESS_RATIO = 1.25;
/**
 * When the best answer is x264 at the anchor, which is ffmpeg's default encode itself, and it is
 * predicted at this share of the input or more, the input is kept without the final encode: the
 * corrected predictions land within −6…+8 % of x264's actual size on the corpus, a re-encode would
 * save a few per cent at most, and it would cost a full encode and a generation of loss (the 10 s
 * x264 wave of the corpus: 1.0× realtime re-encoded, 1.9× kept).
 */
const EFFICIENT_INPUT_RATIO = 0.9;
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

/** The job's clock and its time budget, in seconds since the job started. */
class Budget {
  readonly #started = performance.now();
  /** Seconds the job plans to take; known once the anchor measured the default encode's speed. */
  limit = Infinity;
  /** Estimated time of ffmpeg-default's encode of the whole video. */
  defaultSeconds = Infinity;

  /** Sets the limit from the default encode's estimated time (see `TIME_BUDGET`). */
  plan(duration: number, defaultSeconds: number, multiple?: number): void {
    this.defaultSeconds = defaultSeconds;
    const goal = duration >= REALTIME_GOAL.longFrom ? REALTIME_GOAL.long : REALTIME_GOAL.short;
    const seconds = multiple !== undefined ? multiple * defaultSeconds : Math.min(
      TIME_BUDGET.max * defaultSeconds,
      Math.max(TIME_BUDGET.min * defaultSeconds, duration / goal),
    );
    this.limit = seconds * PLANNING_SHARE;
  }

  get spent(): number {
    return (performance.now() - this.#started) / 1000;
  }

  /** Whether `seconds` more work still ends within the budget. */
  allows(seconds: number): boolean {
    return this.spent + seconds <= this.limit;
  }
}

/** What one search settled on. */
interface Choice {
  lane: Lane;
  crf: number;
  /** Predicted size of the whole encode, in bytes. */
  bytes: number;
  score: number;
  /** The probe that is already this encode (whole-clip samples), if one is. */
  probe?: Probe;
}

/** What the lanes of one job share. */
interface LaneJob {
  search: Search;
  budget: Budget;
  samples: Samples;
  duration: number;
  inputBytes: number;
  /** The anchor: x264 at ffmpeg's default settings, which meets the target by definition. */
  anchor: Choice;
  /**
   * The request named its codec: the anchor is no fallback, so that codec's search answers past
   * the budget and without a passing probe (at the CRF the probes predict).
   */
  forced: boolean;
}

/** Seconds a probe (or several) plus the final encode take at `speed` (samples: exact). */
function costOf(job: LaneJob, speed: number, probes: number): number {
  const final = job.samples.whole ? 0 : job.duration;
  return (probes * job.samples.seconds + final) / speed;
}

/**
 * The slowest preset of `encoder` whose expected probes and final encode fit the budget, judged
 * by the anchor's speed (x264 medium on the same samples) and the encoder's relative speed.
 * Undefined when not even one probe and the final encode at the fastest fit: the anchor answers.
 */
function planPreset(encoder: Encoder, job: LaneJob, anchorSpeed: number): Preset | undefined {
  const fastest = anchorSpeed * encoder.relativeSpeed;
  for (const preset of [...encoder.presets].reverse()) {
    if (job.budget.allows(costOf(job, fastest / preset.slowdown, EXPECTED_PROBES))) return preset;
  }
  const fits = job.forced || job.budget.allows(costOf(job, fastest, 1));
  return fits ? encoder.presets[0] : undefined;
}

/**
 * Probes one lane towards `target` within the budget and settles on a CRF. Undefined when the lane
 * cannot win: out of time before a probe passed, or a probe below the target already as big as
 * the anchor's encode or bigger than the input (a passing one would only be bigger).
 */
async function searchLane(
  lane: Lane,
  startCrf: number,
  target: number,
  job: LaneJob,
): Promise<Choice | undefined> {
  const { search } = job;
  const ceiling = Math.min(job.anchor.bytes, job.inputBytes * HOPELESS_RATIO);
  let crf: number | undefined = startCrf;
  for (let i = 0; i < MAX_PROBES && crf !== undefined; i++) {
    const probe = await search.probe(lane, crf);
    const hopeless = search.linear(probe) < target && search.wholeBytes(probe) >= ceiling;
    if (!job.forced && hopeless) return undefined;
    crf = search.nextCrf(lane, target);
    if (!job.forced && !job.budget.allows(costOf(job, probe.speed, 1))) break;
  }
  if (search.bracket(lane, target).pass) return settle(search, lane, target, job.samples.whole);
  if (!job.forced) return undefined;
  const best = search.mine(lane)[0]!;
  const predicted = search.predictCrf(lane, target);
  // Below every probe's CRF: x264's rule of thumb, 6 steps double the size, sizes it roughly.
  const bytes = search.wholeBytes(best) * 2 ** ((best.crf - predicted) / 6);
  return { lane, crf: predicted, bytes, score: best.score };
}

/**
 * The lane's CRF from its probes: the passing probe nearest the target, or a CRF interpolated
 * between it and a failing probe a few steps above (whole-clip probes are the result itself, so
 * there the passing probe is taken as it is).
 */
function settle(search: Search, lane: Lane, target: number, reuse: boolean): Choice {
  // reuse: whole-clip probes with the result's picture tags are the result's video already.
  const { pass, fail } = search.bracket(lane, target) as { pass: Probe; fail?: Probe };
  const choice: Choice = {
    lane,
    crf: pass.crf,
    bytes: search.wholeBytes(pass),
    score: pass.score,
  };
  if (reuse && pass.path) return { ...choice, probe: pass };
  if (fail && fail.crf - pass.crf <= INTERPOLATE_SPAN) {
    choice.crf = Math.max(pass.crf, search.predictCrf(lane, target));
    const t = (choice.crf - pass.crf) / (fail.crf - pass.crf);
    const [passBytes, failBytes] = [search.wholeBytes(pass), search.wholeBytes(fail)];
    choice.bytes = passBytes * (failBytes / passBytes) ** t;
    const [passAt, failAt] = [search.linear(pass), search.linear(fail)];
    choice.score = search.metric.fromLinear(passAt + t * (failAt - passAt));
  }
  return choice;
}

/** The searched encoders' choices, the anchor among them where H.264 is a candidate. */
async function searchAll(
  encoders: readonly Encoder[],
  job: LaneJob,
  targetOf: (codec: Codec) => Promise<number>,
  anchorSpeed: number,
): Promise<Choice[]> {
  const choices: Choice[] = [];
  for (const encoder of encoders) {
    if (encoder.codec === "h264") {
      choices.push(job.anchor);
      continue;
    }
    const preset = planPreset(encoder, job, anchorSpeed);
    if (!preset) continue; // not even one probe and the final encode fit: the anchor answers
    const lane = { encoder, preset: preset.preset };
    const start = Math.min(encoder.maxCrf, encoder.startCrf + preset.startShift);
    try {
      const choice = await searchLane(lane, start, await targetOf(encoder.codec), job);
      if (choice) choices.push(choice);
    } catch (err) {
      // An encoder that cannot take this input (SVT-AV1 needs 64×64 at least): the others answer.
      if (!(err instanceof FfmpegError)) throw err;
    }
  }
  return choices;
}

async function compressVideo(request: CompressRequest, ctx: JobContext): Promise<JobOutput> {
  const video = requireVideo(ctx.info, "compress");
  const budget = new Budget();
  const inputBytes = (await Deno.stat(ctx.input)).size;
  let container = containerFor(ctx.inputExtension, request.format);
  let encoders = await candidates(ctx, request, container);
  if (encoders.length === 0 && container.format === "webm" && !request.format) {
    container = OUTPUT_FORMATS.get("mkv")!;
    encoders = await candidates(ctx, request, container);
  }
  const metric = searchMetric(ctx.tools);
  const stats: Record<string, unknown> = {
    quality: request.quality,
    metric: metric.name,
    metric_model: metric.model,
    libvmaf: metric.name === "vmaf",
  };
  const h264 = ENCODERS.find((e) => e.codec === "h264")!;
  const anchorLane = { encoder: h264, preset: h264.presets[0]!.preset };
  let samples: Samples, search: Search, anchor: Probe;
  try {
    samples = await extractSamples(ctx);
    const reusable = samples.whole && probeReusable(video, container);
    search = new Search(ctx, samples, {
      metric,
      onProbe: () => {
        ctx.onProgress(0.05 + 0.25 * Math.min(1, search.probes.length / (1 + 2 * encoders.length)));
      },
      ...(reusable ? { extraArgs: (e: Encoder) => pictureArgs(video, e.encoder) } : {}),
    });
    // Scored only when another codec is searched against it (the 2 s 1080p phone clip's VMAF
    // took 4 s): when the budget leaves x264 alone, the anchor is the answer whatever it scores.
    anchor = await search.probe(anchorLane, QUALITY_ANCHORS[request.quality], { scored: false });
  } catch (err) {
    // ffprobe read the file, but a full decode failed: the upload is still the best answer.
    if (!(err instanceof FfmpegError)) throw err;
    return await keepInput(ctx, request, stats, "the video could not be decoded whole");
  }
  budget.plan(ctx.info.duration, ctx.info.duration / anchor.speed, ctx.tools.compressBudget);
  const job: LaneJob = {
    search,
    budget,
    samples,
    duration: ctx.info.duration,
    inputBytes,
    forced: request.codec !== undefined,
    anchor: {
      lane: anchorLane,
      crf: anchor.crf,
      bytes: search.wholeBytes(anchor),
      score: anchor.score,
      ...(anchor.path ? { probe: anchor } : {}),
    },
  };
  const targetOf = async (codec: Codec) => {
    await search.score(anchor);
    job.anchor.score = anchor.score;
    return metric.linear(anchor.score) + METRIC_OFFSETS[metric.name][codec];
  };
  const choices = await searchAll(encoders, job, targetOf, anchor.speed);
  Object.assign(stats, {
    strategy: samples.whole ? "whole-clip" : "sampled",
    ...measured("anchor_score", anchor.score),
    probe_count: search.probes.length,
    probes: search.probes.map(({ path: _, score, ...p }) => ({
      ...p,
      ...measured("score", score),
      speed: round(p.speed, 2),
    })),
    default_seconds_estimate: round(budget.defaultSeconds, 2),
    default_bytes_estimate: Math.round(job.anchor.bytes),
    input_rate_ratio: round(samples.inputRateRatio, 3),
    budget_seconds: round(budget.limit / PLANNING_SHARE, 2),
  });
  let pick = choices.reduce<Choice | undefined>(
    (a, b) => (!a || b.bytes < a.bytes ? b : a),
    undefined,
  );
  if (!pick && !request.codec && !request.format && !container.video!.copy.includes("h264")) {
    // A WebM upload whose own codecs did not fit the time budget: the anchor, in Matroska, as
    // when WebM has no encoder here at all. Kept only if it beats the input, below.
    container = OUTPUT_FORMATS.get("mkv")!;
    pick = job.anchor;
  }
  if (!pick) {
    // A codec override, or WebM asked for (it takes no H.264): the anchor is no choice there.
    const reason = request.codec
      ? `${request.codec} could not encode this video`
      : `no encoder that ${container.format} takes could encode this video`;
    return await keepInput(ctx, request, stats, reason);
  }
  if (pick.bytes >= inputBytes * (samples.whole ? 1 : HOPELESS_RATIO)) {
    return await keepInput(ctx, request, stats, "no encode at this quality beats the input");
  }
  // Video against video: the audio is copied or re-encoded the same way either way.
  const efficient = pick.bytes >= (samples.inputVideoBytes ?? Infinity) * EFFICIENT_INPUT_RATIO;
  if (pick === job.anchor && !request.codec && efficient) {
    const reason = "ffmpeg's default encode would be about as big as the input";
    return await keepInput(ctx, request, stats, reason);
  }
  Object.assign(stats, {
    codec: pick.lane.encoder.codec,
    crf: pick.crf,
    preset: pick.lane.preset,
    ...(Number.isNaN(pick.score) ? {} : {
      target_score: round(metric.fromLinear(await targetOf(pick.lane.encoder.codec))),
      score: round(pick.score),
    }),
    search_seconds: round(budget.spent, 2),
  });
  return await encodeWhole(request, ctx, { video, container, pick, inputBytes, budget, stats });
}

/**
 * Whether a whole-clip probe can be the result's video as it is: the samples are 8-bit 4:2:0 and
 * unrotated, and a container with fixed frame rates would need the final encode's rate change.
 */
function probeReusable(video: StreamInfo, container: OutputFormat): boolean {
  return (video.bitDepth ?? 8) <= 8 && !video.rotation && !video.hdr && !container.frameRates;
}

/** The final encode of the whole video at the chosen setting, every other stream mapped. */
async function encodeWhole(
  request: CompressRequest,
  ctx: JobContext,
  job: {
    video: StreamInfo;
    container: OutputFormat;
    pick: Choice;
    inputBytes: number;
    budget: Budget;
    stats: Record<string, unknown>;
  },
): Promise<JobOutput> {
  const { video, container, pick, stats } = job;
  const encoder = pick.lane.encoder;
  const output = ctx.files.path(`out.${container.format}`);
  // A whole-clip probe at the chosen setting is this encode already: its video is copied.
  const reused = pick.probe?.path;
  stats.reused_probe = reused !== undefined;
  const mapping = mapStreams(ctx.info, {
    format: container,
    mainVideo: reused
      ? { codecArgs: "copy", from: "1:0" }
      : { codecArgs: encoder.args(pick.crf, pick.lane.preset), filter: EVEN_SIDES },
    audio: compressAudioRule(container),
    copyAudio: efficientAudio,
    stripMetadata: request.stripMetadata,
  });
  if (mapping.dropped.length > 0) stats.dropped = mapping.dropped;
  // deno-fmt-ignore
  await runFfmpeg([
    ...inputArgs(ctx.input, ctx.demuxer), ...(reused ? inputArgs(reused) : []), ...mapping.args,
    ...(reused ? [] : [...pictureArgs(video, encoder.encoder), ...rateArgs(video, container)]),
    ...container.muxerArgs,
    "-fs", String(ctx.maxOutputBytes), "-f", container.muxer, output,
  ], {
    ffmpeg: ctx.tools.ffmpeg,
    signal: ctx.signal,
    durationSeconds: ctx.info.duration,
    onProgress: (f) => ctx.onProgress(0.3 + 0.7 * f),
  });
  const outputBytes = (await Deno.stat(output)).size;
  stats.seconds = round(job.budget.spent, 2);
  if (outputBytes >= job.inputBytes) {
    await Deno.remove(output);
    return await keepInput(ctx, request, stats, "the encode came out larger than the input");
  }
  stats.size_ratio = round(outputBytes / job.inputBytes);
  return { path: output, format: container.format, stats: { ...stats, kept_input: false } };
}

/** `{ [key]: value }` rounded, or nothing for a score that was not measured (NaN). */
function measured(key: string, value: number): Record<string, number> {
  return Number.isNaN(value) ? {} : { [key]: round(value) };
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
