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
  /** Roughly how much SSIM one CRF step costs, to aim the next probe. */
  ssimPerCrf: number;
  /** ffmpeg options for this encoder at `crf`. */
  args(crf: number): string[];
}

/** Candidates in order of preference when sizes tie. Presets chosen for 2-core speed. */
export const ENCODERS: readonly Encoder[] = [
  {
    codec: "av1",
    encoder: "libsvtav1",
    minCrf: 18,
    maxCrf: 60,
    startCrf: 38,
    ssimPerCrf: 0.0025,
    args: (crf) => ["-c:v", "libsvtav1", "-preset", "8", "-crf", String(crf), "-g", "240"],
  },
  {
    codec: "h264",
    encoder: "libx264",
    minCrf: 12,
    maxCrf: 38,
    startCrf: 23,
    ssimPerCrf: 0.003,
    args: (crf) => ["-c:v", "libx264", "-preset", "medium", "-crf", String(crf)],
  },
  {
    codec: "hevc",
    encoder: "libx265",
    minCrf: 14,
    maxCrf: 40,
    startCrf: 26,
    ssimPerCrf: 0.003,
    args: (crf) => [
      "-c:v",
      "libx265",
      "-preset",
      "fast",
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
