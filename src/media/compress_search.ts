/**
 * The compress engine's measurements: lossless samples of the video, probe encodes of them scored
 * with the search's metric, and the CRF search over them.
 *
 * @module
 */
import { runFfmpeg, runForOutput } from "./ffmpeg.ts";
import type { Encoder } from "./encoders.ts";

/** An encoder at one preset: the search's probes of a lane are comparable with each other. */
export interface Lane {
  encoder: Encoder;
  preset: string;
}
import type { Metric } from "./metric.ts";
import { inputArgs, type JobContext } from "./operation.ts";
import { type MediaInfo, probe } from "./probe.ts";
import { EVEN_SIDES } from "./video.ts";

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
/** Largest single CRF step while the target is not yet bracketed. */
const MAX_STEP = 12;

/** One probe encode of the samples. */
export interface Probe {
  codec: Encoder["codec"];
  crf: number;
  preset: string;
  /** The search metric's score; NaN while not measured (see `Search.score`). */
  score: number;
  /** Size of the encoded samples, keyframes weighted as in a full encode. */
  bytes: number;
  /** Media seconds encoded per wall-clock second. */
  speed: number;
  /** The encode itself, kept when it may be the result (see `Search`'s `extraArgs`). */
  path?: string;
}

/** ffprobe's view of the samples, and what follows from it. */
export interface SampleDetails {
  info: MediaInfo;
  /** Keyframes a full encode places in as much video as the samples hold. */
  keyframes: number;
}

/** The lossless sample file, its media seconds, and ffprobe's view of it. */
export interface Samples {
  path: string;
  seconds: number;
  /**
   * ffprobe's reading of the samples, made once, when the first probe is measured: it then runs
   * beside that probe's packet count instead of before its encode (a process start of Debian's
   * ffmpeg is ~0.15 s of loading, on the job's critical path otherwise).
   */
  details: () => Promise<SampleDetails>;
  /** How many pieces were joined: each starts with a keyframe the encoder had to place. */
  pieces: number;
  /** Whether the samples are the whole video, from its start. */
  whole: boolean;
  /**
   * The upload's own video bitrate within the sampled pieces over its bitrate overall (1 when the
   * samples are the whole video): pieces busier or calmer than the rest scale the size predictions.
   */
  inputRateRatio: number;
  /** The upload's video stream in bytes, where the pieces were sampled from it (else undefined). */
  inputVideoBytes?: number;
}

/** One packet of an encode: its size in bytes and whether it is a keyframe. */
export interface Packet {
  size: number;
  keyframe: boolean;
}

/** Packets from ffprobe's `-show_entries packet=size,flags -of csv=p=0` (flags `K_`, `__`, …). */
export function packetsFromCsv(csv: string): Packet[] {
  return csv.split("\n").filter((line) => line.trim() !== "").map((line) => {
    const [size, flags] = line.split(",");
    return { size: Number(size), keyframe: flags?.startsWith("K") ?? false };
  });
}

/**
 * Packets from ffmpeg's `framecrc` muxer: `stream, dts, pts, duration, size, crc[, F=0xFLAGS]`
 * after `#` header lines; the flags are printed only where they differ from a plain keyframe.
 */
export function packetsFromFramecrc(text: string): Packet[] {
  return text.split("\n").filter((line) => line.trim() !== "" && !line.startsWith("#"))
    .map((line) => {
      const fields = line.split(",").map((field) => field.trim());
      const flags = fields.find((field) => field.startsWith("F="));
      const keyframe = flags === undefined || (parseInt(flags.slice(2), 16) & 1) === 1;
      return { size: Number(fields[4]), keyframe };
    });
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

/**
 * The graph that joins the pieces (one input each, video stream `stream`) into the samples: even
 * sides and 8-bit 4:2:0, what every candidate encodes, as output `[v]`.
 */
export function sampleGraph(pieces: number, stream: string): string {
  const streams = Array.from({ length: pieces }, (_, i) => `[${i}:${stream}]`).join("");
  return `${streams}concat=n=${pieces}:v=1:a=0,${EVEN_SIDES},format=yuv420p[v]`;
}

/** Cuts the samples into one lossless file, so every probe is scored against the same frames. */
export async function extractSamples(ctx: JobContext): Promise<Samples> {
  const { starts, length } = samplePlan(ctx.info.duration);
  const whole = starts.length === 1 && starts[0] === 0;
  // A whole video is read without seeking: ffmpeg 5.1 writes a broken file after `-ss 0` on FLV.
  const inputs = whole ? inputArgs(ctx.input, ctx.demuxer) : starts.flatMap((start) => [
    "-ss",
    start.toFixed(3),
    "-t",
    length.toFixed(3),
    ...inputArgs(ctx.input, ctx.demuxer),
  ]);
  const path = ctx.files.path("samples.mkv");
  const [, rates] = await Promise.all([
    runFfmpeg([
      ...inputs,
      "-filter_complex",
      sampleGraph(starts.length, String(ctx.info.video!.index)),
      "-map",
      "[v]",
      ...sampleCodec(ctx.info, starts.length * length),
      "-fps_mode",
      "passthrough",
      path,
    ], { ffmpeg: ctx.tools.ffmpeg, signal: ctx.signal }),
    whole ? undefined : sampledRates(ctx, starts, length),
  ]);
  const seconds = starts.length * length;
  const duration = Math.max(ctx.info.duration, seconds);
  let described: Promise<SampleDetails> | undefined;
  const details = () =>
    described ??= probe(path, { ffprobe: ctx.tools.ffprobe, signal: ctx.signal }).then((info) => {
      const keyframes = Math.max(1, (duration * (info.video?.frameRate ?? 25)) / GOP_FRAMES);
      return { info, keyframes: (keyframes * seconds) / duration };
    });
  return {
    path,
    seconds,
    details,
    pieces: starts.length,
    whole,
    inputRateRatio: rates?.ratio ?? 1,
    ...(rates?.videoBytes ? { inputVideoBytes: rates.videoBytes } : {}),
  };
}

/**
 * The upload's video bitrate inside the sample pieces over its bitrate overall, and its video
 * stream's size, from its packet sizes (a demux, no decode). Keyframes are left out where there
 * are others: one scene-cut keyframe inside or just outside a piece swung the ratio by 12 % on a
 * 10 s clip, and the probes place their own. On the corpus the samples alone predicted x264's
 * whole encode at 0.86–1.20× its actual size; scaled by this ratio, 0.94–1.08×. Clamped, and 1
 * when the timestamps say nothing.
 */
async function sampledRates(
  ctx: JobContext,
  starts: number[],
  length: number,
): Promise<{ ratio: number; videoBytes: number }> {
  const stream = String(ctx.info.video!.index);
  const fields = "pts_time,dts_time,size,flags";
  const packets = await packetCsv(ctx, stream, fields, inputArgs(ctx.input, ctx.demuxer));
  return rateRatio(packets, { starts, length }, ctx.info.duration);
}

/** ffprobe's CSV of one stream's packets, `fields` per line (a demux, no decode). */
function packetCsv(
  ctx: JobContext,
  stream: string,
  fields: string,
  input: string[],
): Promise<string> {
  // deno-fmt-ignore
  return runForOutput(ctx.tools.ffprobe, [
    "-v", "error", "-select_streams", stream, "-show_entries", `packet=${fields}`,
    "-of", "csv=p=0", ...input,
  ], ctx.signal);
}

/**
 * {@linkcode sampledRates} from ffprobe's `pts_time,dts_time,size,flags` CSV of the video's
 * packets, the sample plan and the video's duration.
 */
export function rateRatio(
  csv: string,
  { starts, length }: { starts: number[]; length: number },
  duration: number,
): { ratio: number; videoBytes: number } {
  // Plain number arrays, no object per packet: four hours at 60 fps is 864,000 packets.
  const times: number[] = [], sizes: number[] = [], keys: boolean[] = [];
  let videoBytes = 0;
  for (const [, pts, dts, size, flags] of csv.matchAll(/^([^,\n]*),([^,\n]*),(\d+),(.*)$/gm)) {
    const bytes = Number(size);
    if (!(bytes > 0)) continue;
    times.push(Number(pts === "N/A" ? dts : pts));
    sizes.push(bytes);
    keys.push(flags!.startsWith("K"));
    videoBytes += bytes;
  }
  // Elementary streams (.h264, .m2v) carry no timestamps: packets are then spread evenly.
  if (times.some((time) => !Number.isFinite(time))) {
    times.forEach((_, i) => times[i] = (i / times.length) * duration);
  }
  let first = Infinity, last = -Infinity;
  for (const time of times) {
    first = Math.min(first, time);
    last = Math.max(last, time);
  }
  const skipKeys = keys.includes(false);
  let all = 0, sampled = 0;
  for (let i = 0; i < times.length; i++) {
    if (skipKeys && keys[i]) continue;
    all += sizes[i]!;
    const at = times[i]! - first;
    if (starts.some((start) => at >= start && at < start + length)) sampled += sizes[i]!;
  }
  const span = last - first;
  if (!(span > 0 && sampled > 0)) return { ratio: 1, videoBytes };
  const ratio = (sampled / (starts.length * length)) / (all / span);
  return { ratio: Math.min(2, Math.max(0.5, ratio)), videoBytes };
}

/** Encodes the samples at CRFs and finds the one that meets a target. */
export class Search {
  readonly probes: Probe[] = [];
  readonly metric: Metric;
  #ctx: JobContext;
  #samples: Samples;
  #onProbe: () => void;
  /** Probes measured without a score, and their files. */
  #unscored = new Map<Probe, string>();
  /**
   * Options every probe of an encoder adds: the result's picture tags, given when the samples are
   * the whole video and a probe may be the result itself (its file is then kept).
   */
  #extraArgs?: (encoder: Encoder) => string[];

  constructor(
    ctx: JobContext,
    samples: Samples,
    options: {
      metric: Metric;
      onProbe: () => void;
      extraArgs?: (encoder: Encoder) => string[];
    },
  ) {
    this.#ctx = ctx;
    this.#samples = samples;
    this.metric = options.metric;
    this.#onProbe = options.onProbe;
    if (options.extraArgs) this.#extraArgs = options.extraArgs;
  }

  /**
   * Encodes the samples at `crf` and scores them. `{ scored: false }` measures its size only and
   * leaves the score (NaN) to {@linkcode Search.score}, for a probe that may need none.
   */
  async probe({ encoder, preset }: Lane, crf: number, { scored = true } = {}): Promise<Probe> {
    const known = this.probes.find((p) =>
      p.codec === encoder.codec && p.crf === crf && p.preset === preset
    );
    if (known) return known;
    const name = `probe-${encoder.codec}-${crf}-${preset}`;
    const path = this.#ctx.files.path(`${name}.mkv`);
    const started = performance.now();
    // deno-fmt-ignore
    await runFfmpeg([
      ...inputArgs(this.#samples.path), ...encoder.args(crf, preset), "-pix_fmt", "yuv420p",
      ...(this.#extraArgs?.(encoder) ?? []), "-fps_mode", "passthrough", "-an", path,
    ], { ffmpeg: this.#ctx.tools.ffmpeg, signal: this.#ctx.signal });
    const seconds = (performance.now() - started) / 1000;
    // Scoring keeps one to two threads busy, an unscored probe's packet count one: the job lends
    // its other threads to the queue meanwhile (a borrower may overlap the next encode; the CPU
    // idles less).
    this.#ctx.useThreads?.(1);
    const packetLog = scored ? this.#ctx.files.path(`${name}.framecrc`) : undefined;
    const [score, bytes] = await this.#measureWithSize(path, packetLog)
      .finally(() => this.#ctx.useThreads?.());
    const speed = this.#samples.seconds / Math.max(seconds, 0.001);
    const result: Probe = { codec: encoder.codec, crf, preset, score, bytes, speed };
    if (this.#extraArgs) result.path = path;
    if (scored) await this.#done(path);
    else this.#unscored.set(result, path);
    this.probes.push(result);
    this.#onProbe();
    return result;
  }

  /** Scores a probe made with `{ scored: false }`, once. */
  async score(probe: Probe): Promise<void> {
    const path = this.#unscored.get(probe);
    if (path === undefined) return;
    this.#unscored.delete(probe);
    this.#ctx.useThreads?.(1);
    probe.score = await this.#measure(path).finally(() => this.#ctx.useThreads?.());
    await this.#done(path);
  }

  /** Deletes a measured probe's file, unless it may be the result (see `extraArgs`). */
  async #done(path: string): Promise<void> {
    if (!this.#extraArgs) await Deno.remove(path);
  }

  /** The search metric's score of the encode at `path` against the samples. */
  async #measure(path: string, packetLog?: string): Promise<number> {
    const video = (await this.#samples.details()).info.video!;
    const frameRate = video.frameRate ?? 25;
    return await this.metric.score(path, this.#samples.path, {
      frameRate,
      width: video.width!,
      height: video.height!,
      frames: this.#samples.seconds * frameRate,
      logPath: this.#ctx.files.path(`vmaf-${this.probes.length}.json`),
      signal: this.#ctx.signal,
      ...(packetLog ? { packetLog } : {}),
    });
  }

  /**
   * The probe's score and its size as in a full encode. Scored where a `packetLog` is given: the
   * scoring pass lists the packets there too. Else (score NaN) ffprobe lists them, in a process
   * whose time is mostly its start-up.
   */
  async #measureWithSize(path: string, packetLog?: string): Promise<[number, number]> {
    if (packetLog === undefined) {
      // The samples' own ffprobe (made once) starts here too, beside this one, not after it.
      const [csv] = await Promise.all([
        packetCsv(this.#ctx, "v:0", "size,flags", inputArgs(path)),
        this.#samples.details(),
      ]);
      return [NaN, await this.#sizeAsInFullEncode(packetsFromCsv(csv))];
    }
    try {
      const score = await this.#measure(path, packetLog);
      const packets = packetsFromFramecrc(await Deno.readTextFile(packetLog));
      return [score, await this.#sizeAsInFullEncode(packets)];
    } finally {
      await Deno.remove(packetLog).catch(() => {});
    }
  }

  /**
   * The probe's size with its keyframes counted as a full encode would have them: each sample piece
   * starts with a forced keyframe, which in 2 s pieces would weigh several times more than in the
   * video, and more for some encoders than for others. Other keyframes (scene cuts) count in full.
   */
  async #sizeAsInFullEncode(packets: Packet[]): Promise<number> {
    let key = 0, keys = 0, other = 0;
    for (const { size, keyframe } of packets) {
      if (keyframe) {
        key += size;
        keys++;
      } else other += size;
    }
    if (keys === 0) return other;
    const sceneCuts = Math.max(0, keys - this.#samples.pieces);
    const { keyframes } = await this.#samples.details();
    return Math.round(other + (key / keys) * (sceneCuts + keyframes));
  }

  /** A lane's probes, by CRF. */
  mine({ encoder, preset }: Lane): Probe[] {
    return this.probes.filter((p) => p.codec === encoder.codec && p.preset === preset)
      .sort((a, b) => a.crf - b.crf);
  }

  /** A probe's score on the metric's linear scale. */
  linear(probe: Probe): number {
    return this.metric.linear(probe.score);
  }

  /** A probe's size scaled to the whole video, in bytes. */
  wholeBytes(probe: Probe): number {
    const { seconds, inputRateRatio } = this.#samples;
    return (probe.bytes / seconds) * this.#ctx.info.duration / inputRateRatio;
  }

  /**
   * The lane's highest-CRF probe reaching `target`, and its nearest failing probe above it (or,
   * when none passes, the lowest-CRF failing one).
   */
  bracket(lane: Lane, target: number): { pass?: Probe; fail?: Probe } {
    const mine = this.mine(lane);
    const pass = mine.filter((p) => this.linear(p) >= target).at(-1);
    const fail = mine.find((p) => this.linear(p) < target && (!pass || p.crf > pass.crf));
    return { ...(pass ? { pass } : {}), ...(fail ? { fail } : {}) };
  }

  /** Linear units lost per CRF step: measured from the two probes nearest the target. */
  slope(lane: Lane, target: number): number {
    const mine = this.mine(lane);
    const fallback = this.metric.perCrf[lane.encoder.codec] ?? 0.5;
    if (mine.length < 2) return fallback;
    const at = (p: Probe) => this.linear(p);
    const [a, b] = [...mine].sort((x, y) => Math.abs(at(x) - target) - Math.abs(at(y) - target))
      .slice(0, 2).sort((x, y) => x.crf - y.crf);
    const slope = (at(a!) - at(b!)) / (b!.crf - a!.crf);
    return slope > fallback / 20 ? slope : fallback;
  }

  /**
   * The CRF expected to land on `target` (linear units): interpolated between the nearest passing
   * and failing probes, else extrapolated from the one nearest the target.
   */
  predictCrf(lane: Lane, target: number): number {
    const { encoder } = lane;
    const at = (p: Probe) => this.linear(p);
    const { pass, fail } = this.bracket(lane, target);
    if (pass && fail) {
      const t = (at(pass) - target) / Math.max(at(pass) - at(fail), 1e-6);
      return Math.floor(pass.crf + t * (fail.crf - pass.crf));
    }
    const from = (pass ?? fail)!;
    const step = (at(from) - target) / this.slope(lane, target);
    const next = from.crf + Math.max(-MAX_STEP, Math.min(MAX_STEP, Math.floor(step)));
    return Math.min(encoder.maxCrf, Math.max(encoder.minCrf, next));
  }

  /**
   * The next CRF worth probing, or undefined when the search is done: a passing probe close enough
   * to the target, or passing and failing probes one step apart.
   */
  nextCrf(lane: Lane, target: number): number | undefined {
    const { pass, fail } = this.bracket(lane, target);
    if (pass && this.linear(pass) - target < this.metric.closeEnough) return undefined;
    if (pass && fail && fail.crf - pass.crf <= 1) return undefined;
    let next = this.predictCrf(lane, target);
    if (pass && next <= pass.crf) next = pass.crf + 1;
    if (fail && next >= fail.crf) next = fail.crf - 1;
    // Below every probe: at least 2 steps, where a nearly flat curve would make the step tiny.
    if (!pass && fail) next = Math.max(lane.encoder.minCrf, Math.min(next, fail.crf - 2));
    return this.mine(lane).some((p) => p.crf === next) ? undefined : next;
  }
}
