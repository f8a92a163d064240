import { runForOutput } from "./ffmpeg.ts";

/** A codec the compress engine can pick, with its quality scale. */
export interface Encoder {
  /** Public name, as in the request's `codec`. */
  codec: "av1" | "hevc" | "h264";
  /** ffmpeg encoder. */
  encoder: string;
  /** CRF range searched; lower is better quality. */
  minCrf: number;
  maxCrf: number;
  /** Where the search starts. */
  startCrf: number;
  /**
   * Roughly how much SSIM, in decibels (see `ssimDb`), one CRF step costs, to aim the next probe
   * before two probes measure it. Measured on the bench clips: SVT-AV1 0.2–0.4, x264 0.6–0.9.
   */
  dbPerCrf: number;
  /**
   * The search probes at `probe`; the final encode may use the slower `final` preset when time
   * allows, because at the same CRF it measured better (SVT-AV1 preset 8 vs 10 on grain, text and
   * camera clips: higher SSIM, from 11 % smaller to 4 % larger, at 1.8–2.1× the time, `slowdown`).
   */
  presets: { probe: string; final: string; slowdown: number };
  /** ffmpeg options for this encoder at `crf` and `preset`. */
  args(crf: number, preset: string): string[];
}

/** Candidates in order of preference when sizes tie. Presets chosen for 2-core speed. */
export const ENCODERS: readonly Encoder[] = [
  {
    codec: "av1",
    encoder: "libsvtav1",
    minCrf: 18,
    maxCrf: 63,
    startCrf: 38,
    dbPerCrf: 0.25,
    presets: { probe: "10", final: "8", slowdown: 2 },
    args: (
      crf,
      preset,
    ) => ["-c:v", "libsvtav1", "-preset", preset, "-crf", String(crf), "-g", "240"],
  },
  {
    codec: "h264",
    encoder: "libx264",
    minCrf: 12,
    maxCrf: 38,
    startCrf: 23,
    dbPerCrf: 0.6,
    presets: { probe: "medium", final: "medium", slowdown: 1 },
    args: (crf, preset) => ["-c:v", "libx264", "-preset", preset, "-crf", String(crf)],
  },
  {
    codec: "hevc",
    encoder: "libx265",
    minCrf: 14,
    maxCrf: 40,
    startCrf: 26,
    dbPerCrf: 0.6,
    presets: { probe: "fast", final: "fast", slowdown: 1 },
    args: (crf, preset) => [
      "-c:v",
      "libx265",
      "-preset",
      preset,
      "-crf",
      String(crf),
      "-x265-params",
      "log-level=error",
      "-tag:v",
      "hvc1",
    ],
  },
];

const available = new Map<string, Promise<Set<string>>>();

/** Names of the encoders this ffmpeg build has (asked once per ffmpeg path). */
export function availableEncoders(ffmpeg: string): Promise<Set<string>> {
  let found = available.get(ffmpeg);
  if (!found) {
    found = runForOutput(ffmpeg, ["-hide_banner", "-encoders"]).then((text) =>
      new Set(text.split("\n").map((line) => line.trim().split(/\s+/)[1] ?? ""))
    );
    available.set(ffmpeg, found);
  }
  return found;
}
