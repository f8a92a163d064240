import { runForOutput } from "./ffmpeg.ts";

/** An encoder preset with its cost and CRF scale relative to the fastest preset (720p, 2 cores). */
export interface Preset {
  preset: string;
  /** Encode time relative to the encoder's fastest preset. */
  slowdown: number;
  /**
   * CRF steps above the encoder's `startCrf` where this preset's search starts: slower presets
   * reach the same VMAF at a higher CRF (bench:calibrate, against SVT-AV1 preset 12: 11 +1.5…+3,
   * 10 +2.3…+6.7, 8 +12.7 on the talking head).
   */
  startShift: number;
}

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
   * Presets, fastest first: the job searches and encodes at the slowest one its time budget
   * allows. Slower SVT-AV1 presets are much smaller at equal VMAF (corpus samples, size against
   * x264's default: preset 12 1.0–1.1×, 11 0.85–1.0×, 10 0.77–0.85×, 8 0.68×).
   */
  presets: readonly Preset[];
  /** Speed of the fastest preset relative to x264 medium (ffmpeg's default), for planning. */
  relativeSpeed: number;
  /** ffmpeg options for this encoder at `crf` and `preset`. */
  args(crf: number, preset: string): string[];
}

/** Candidates in order of preference when sizes tie. Presets chosen for 2-core speed. */
export const ENCODERS: readonly Encoder[] = [
  {
    codec: "av1",
    encoder: "libsvtav1",
    minCrf: 12,
    maxCrf: 63,
    // Where preset 12 matched x264's default VMAF on the corpus: CRF 20–32, median 24.
    startCrf: 24,
    presets: [
      { preset: "12", slowdown: 1, startShift: 0 },
      { preset: "11", slowdown: 1.7, startShift: 2 },
      { preset: "10", slowdown: 2.2, startShift: 4 },
      { preset: "8", slowdown: 3.2, startShift: 8 },
    ],
    relativeSpeed: 1.35,
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
    presets: [{ preset: "medium", slowdown: 1, startShift: 0 }],
    relativeSpeed: 1,
    args: (crf, preset) => ["-c:v", "libx264", "-preset", preset, "-crf", String(crf)],
  },
  {
    codec: "hevc",
    encoder: "libx265",
    minCrf: 14,
    maxCrf: 40,
    startCrf: 24,
    presets: [{ preset: "fast", slowdown: 1, startShift: 0 }],
    relativeSpeed: 0.55,
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
