/**
 * The quality metric the compress search scores its probes with: VMAF where an ffmpeg with libvmaf
 * is configured (the field's perceptual metric), else SSIM with targets calibrated against VMAF
 * (docs/compress.md), so both paths land on the same perceived quality.
 *
 * @module
 */
import type { Tools } from "./ffmpeg.ts";
import { measureSsim, type SsimOptions } from "./ssim.ts";
import { measureVmaf, VMAF_MODELS } from "./vmaf.ts";

/** Which metric scored a search. */
export type MetricName = "vmaf" | "ssim";

/** What a search needs of a metric. */
export interface Metric {
  name: MetricName;
  /** The model or variant, as `stats.metric_model` reports it. */
  model: string;
  /** Scores `distorted` against `reference` on one time grid (see `alignmentGraph`). */
  score(distorted: string, reference: string, options: ScoreOptions): Promise<number>;
  /** The score on a scale where quality is close to linear in CRF. */
  linear(score: number): number;
  /** The score of a value on that linear scale (the inverse of `linear`). */
  fromLinear(value: number): number;
  /** A probe this close above the target (linear units) ends the search. */
  closeEnough: number;
  /** Linear units one CRF step costs, per codec, until two probes measure it. */
  perCrf: Readonly<Record<string, number>>;
}

/** Options of {@linkcode Metric.score}. */
export interface ScoreOptions extends Omit<SsimOptions, "ffmpeg"> {
  /** Where VMAF writes its score log (deleted after reading). */
  logPath: string;
  /** Frames the clip holds, to score a bounded number of them. */
  frames: number;
}

/**
 * VMAF scores every n-th frame so that about this many are scored. Measured on 8 s of the talking
 * head: every 4th frame took 0.40 s against 0.70 s for all (SSIM: 0.30 s) and moved the pooled
 * score by 0.6; the anchor and the probes are scored on the same frames, so the comparison that
 * decides the CRF holds better than the absolute figure.
 */
const VMAF_FRAMES = 60;

/**
 * SSIM as decibels, `-10·log10(1 − SSIM)` (as ffmpeg prints it): 0.99 → 20 dB, 0.999 → 30 dB.
 * CRF moves it about linearly, where raw SSIM crowds towards 1.
 */
export function ssimDb(ssim: number): number {
  return -10 * Math.log10(Math.max(1 - ssim, 1e-6));
}

/** SSIM (ffmpeg's `All`), scored by the engine's own ffmpeg. */
export function ssimMetric(ffmpeg: string): Metric {
  return {
    name: "ssim",
    model: "ffmpeg ssim (All), calibrated against VMAF v0.6.1",
    score: (distorted, reference, options) =>
      measureSsim(distorted, reference, { ...options, ffmpeg }),
    linear: ssimDb,
    fromLinear: (db) => 1 - 10 ** (-db / 10),
    closeEnough: 0.03,
    // Measured on the corpus (bench:calibrate): SVT-AV1 preset 12 0.06–0.17 dB per step, x265
    // 0.3–0.5, x264 0.6–0.9.
    perCrf: { av1: 0.1, h264: 0.6, hevc: 0.4 },
  };
}

/** VMAF v0.6.1 (0..100), scored by an ffmpeg with libvmaf. */
export function vmafMetric(ffmpeg: string): Metric {
  return {
    name: "vmaf",
    model: `libvmaf ${VMAF_MODELS.vmaf}`,
    score: async (distorted, reference, options) => {
      const subsample = Math.max(1, Math.floor(options.frames / VMAF_FRAMES));
      const scores = await measureVmaf(distorted, reference, {
        ...options,
        ffmpeg,
        subsample,
        standardOnly: true,
      });
      return scores.vmaf;
    },
    linear: (score) => score,
    fromLinear: (value) => value,
    closeEnough: 0.3,
    // Measured on the corpus (bench:calibrate): SVT-AV1 preset 12 0.05–0.6 VMAF per step (flat on
    // screen content), x265 0.2–1.5, x264 about 1.
    perCrf: { av1: 0.3, h264: 1, hevc: 0.8 },
  };
}

/** The metric a search uses with these tools: VMAF when a scorer has libvmaf, else SSIM. */
export function searchMetric(tools: Tools): Metric {
  return tools.vmaf ? vmafMetric(tools.vmaf) : ssimMetric(tools.ffmpeg);
}
