/**
 * VMAF, where the ffmpeg in use has libvmaf (Debian's 5.1 has not; the static 7.0.2 in
 * ../shared/tools has). Scored on the same aligned time grid as SSIM (see `alignmentGraph`).
 *
 * @module
 */
import { join } from "node:path";
import { FfmpegError, hasLibvmaf, toolCommand } from "./ffmpeg.ts";
import { alignmentGraph, packetLogArgs, scoredInputs, type SsimOptions } from "./ssim.ts";

/** The VMAF models scored: the standard one and the "no enhancement gain" one. */
export const VMAF_MODELS = { vmaf: "vmaf_v0.6.1", vmafNeg: "vmaf_v0.6.1neg" } as const;

/** VMAF scores (0..100, pooled mean) of one encode. */
export interface VmafScores {
  vmaf: number;
  vmafNeg: number;
}

export { hasLibvmaf };

/** Options of {@linkcode measureVmaf}. */
export interface VmafOptions extends SsimOptions {
  /** A directory for the score log (libvmaf writes its pooled scores to a file). */
  scratchDir?: string;
  /** The score log's path instead of a random name in `scratchDir`. */
  logPath?: string;
  /** Score every n-th frame only (libvmaf's n_subsample), for a search that must be quick. */
  subsample?: number;
  /** Only the standard model, not VMAF NEG (NEG is then reported as NaN). */
  standardOnly?: boolean;
}

/**
 * VMAF and VMAF NEG of `distorted` against `reference`, in one pass. Throws {@linkcode FfmpegError}
 * when the ffmpeg lacks libvmaf or cannot read either file.
 */
export async function measureVmaf(
  distorted: string,
  reference: string,
  options: VmafOptions,
): Promise<VmafScores> {
  const log = options.logPath ??
    join(options.scratchDir ?? Deno.cwd(), `vmaf-${crypto.randomUUID()}.json`);
  // Option values inside a filter graph: "\\:" keeps the model's own ":" in the model string.
  const models = Object.entries(VMAF_MODELS)
    .filter(([name]) => !options.standardOnly || name === "vmaf")
    .map(([name, version]) => `version=${version}\\\\:name=${name}`).join("|");
  const metric = `libvmaf=model=${models}:log_fmt=json:log_path=${log}:n_threads=2` +
    `:n_subsample=${Math.max(1, Math.round(options.subsample ?? 1))}`;
  const { success, code, stderr } = await toolCommand(options.ffmpeg, {
    // deno-fmt-ignore
    args: ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", ...scoredInputs(distorted, reference, options), "-lavfi", alignmentGraph(options, metric), "-f", "null", "-", ...packetLogArgs(options)],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    ...(options.signal ? { signal: options.signal } : {}),
  }).output();
  try {
    if (!success) {
      throw new FfmpegError("ffmpeg vmaf", code, new TextDecoder().decode(stderr).slice(-4096));
    }
    const pooled = JSON.parse(await Deno.readTextFile(log)).pooled_metrics;
    return { vmaf: pooled.vmaf.mean, vmafNeg: pooled.vmafNeg?.mean ?? NaN };
  } finally {
    await Deno.remove(log).catch(() => {});
  }
}
