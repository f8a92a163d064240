/**
 * `deno task bench:calibrate [--only NAMES]`: calibrates compress's SSIM targets against VMAF.
 *
 * Debian's ffmpeg has no libvmaf, so there the search scores SSIM; but AV1 and HEVC smooth away
 * detail that SSIM barely counts and VMAF does, so at equal SSIM they look worse than x264. For each
 * real clip (bench/corpus.ts) this encodes the engine's samples with x264 at ffmpeg's defaults (the
 * anchor) and with each codec at several CRFs, scores all with SSIM and VMAF, finds the CRF where a
 * codec matches the anchor's VMAF (plus the VMAF search's own margin), and prints how far above the
 * anchor's SSIM (in dB) that CRF lands: the offset `METRIC_OFFSETS.ssim` needs.
 * Needs an ffmpeg with libvmaf: `--vmaf-ffmpeg PATH` or env MMP_VMAF_FFMPEG.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { METRIC_OFFSETS } from "../src/media/compress.ts";
import { sampleGraph, samplePlan } from "../src/media/compress_search.ts";
import { ENCODERS } from "../src/media/encoders.ts";
import { ssimDb } from "../src/media/metric.ts";
import { probe } from "../src/media/probe.ts";
import { measureSsim } from "../src/media/ssim.ts";
import { measureVmaf } from "../src/media/vmaf.ts";
import { corpusClips } from "./corpus.ts";
import { ffmpeg, requireVmafFfmpeg, scratch, type SweepPoint, vmafCrossing } from "./_common.ts";

/** CRFs tried per codec, around where each matches x264's default on the corpus. */
const SWEEPS: Record<string, { preset: string; crfs: number[] }> = {
  av1: { preset: "12", crfs: [14, 20, 26, 32, 38] },
  hevc: { preset: "fast", crfs: [20, 24, 28, 32] },
};

interface Point extends SweepPoint {
  ssimDb: number;
}

/** The engine's samples of `path`, losslessly (FFV1), as compress cuts them. */
async function samples(path: string, duration: number, out: string): Promise<number> {
  const { starts, length } = samplePlan(duration);
  const inputs = starts.length === 1 && starts[0] === 0
    ? ["-i", path]
    : starts.flatMap((s) => ["-ss", s.toFixed(3), "-t", length.toFixed(3), "-i", path]);
  await ffmpeg([
    ...inputs,
    "-filter_complex",
    sampleGraph(starts.length, "v:0"),
    ...["-map", "[v]", "-c:v", "ffv1", "-fps_mode", "passthrough", out],
  ]);
  return starts.length * length;
}

async function point(
  encoded: string,
  reference: string,
  crf: number,
  vmafFfmpeg: string,
  dir: string,
): Promise<Point> {
  const video = (await probe(reference, { ffprobe: "ffprobe" })).video!;
  const options = {
    frameRate: video.frameRate ?? 25,
    width: video.width!,
    height: video.height!,
  };
  const ssim = await measureSsim(encoded, reference, { ...options, ffmpeg: "ffmpeg" });
  const vmaf = await measureVmaf(encoded, reference, {
    ...options,
    ffmpeg: vmafFfmpeg,
    scratchDir: dir,
    standardOnly: true,
  });
  return { crf, ssimDb: ssimDb(ssim), vmaf: vmaf.vmaf, bytes: (await Deno.stat(encoded)).size };
}

/**
 * The SSIM (dB) and size where the sweep's VMAF crosses `vmaf`, interpolated (size in log scale);
 * undefined if it never does.
 */
function atVmaf(points: Point[], vmaf: number): { ssimDb: number; bytes: number } | undefined {
  const crossing = vmafCrossing(points, vmaf);
  if (!crossing) return undefined;
  const { a, b, t, bytes } = crossing;
  return { ssimDb: a.ssimDb + t * (b.ssimDb - a.ssimDb), bytes };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      only: { type: "string" },
      "vmaf-ffmpeg": { type: "string" },
      presets: { type: "string" },
    },
  });
  // `--presets av1:10,hevc:medium`: other presets than the engine's fastest, to compare sizes.
  for (const item of values.presets?.split(",") ?? []) {
    const [codec, preset] = item.split(":");
    if (codec && preset && SWEEPS[codec]) SWEEPS[codec]!.preset = preset;
  }
  const vmafFfmpeg = await requireVmafFfmpeg(values["vmaf-ffmpeg"], "calibrate");
  const only = values.only?.split(",");
  const clips = (await corpusClips()).filter((c) => !only || only.some((o) => c.name.includes(o)));
  await using dir = await scratch();
  const offsets: Record<string, number[]> = { av1: [], hevc: [] };
  for (const clip of clips) {
    const info = await probe(clip.path, { ffprobe: "ffprobe" });
    const reference = join(dir.path, "samples.mkv");
    await samples(clip.path, info.duration, reference);
    const anchorPath = join(dir.path, "anchor.mkv");
    await ffmpeg([
      "-i",
      reference,
      "-c:v",
      "libx264",
      "-preset",
      "medium",
      "-crf",
      "23",
      anchorPath,
    ]);
    const anchor = await point(anchorPath, reference, 23, vmafFfmpeg, dir.path);
    const line = [
      `${clip.name}: x264 ${anchor.vmaf.toFixed(2)} VMAF ${anchor.ssimDb.toFixed(2)} dB`,
    ];
    for (const [codec, sweep] of Object.entries(SWEEPS)) {
      const encoder = ENCODERS.find((e) => e.codec === codec)!;
      const points: Point[] = [];
      for (const crf of sweep.crfs) {
        const out = join(dir.path, `${codec}-${crf}.mkv`);
        await ffmpeg([
          "-i",
          reference,
          ...encoder.args(crf, sweep.preset),
          "-pix_fmt",
          "yuv420p",
          out,
        ]);
        points.push(await point(out, reference, crf, vmafFfmpeg, dir.path));
      }
      const want = anchor.vmaf + METRIC_OFFSETS.vmaf[encoder.codec];
      const at = atVmaf(points, want);
      if (at !== undefined) offsets[codec]!.push(at.ssimDb - anchor.ssimDb);
      line.push(
        `${codec}: ${
          points.map((p) => `${p.crf}:${p.vmaf.toFixed(1)}/${p.ssimDb.toFixed(2)}`).join(" ")
        } (p${sweep.preset}) → ${
          at === undefined
            ? "never reaches x264's VMAF"
            : `offset ${(at.ssimDb - anchor.ssimDb).toFixed(2)} dB, size ${
              (at.bytes / anchor.bytes).toFixed(2)
            }× x264's`
        }`,
      );
    }
    console.log(line.join("\n  "));
  }
  for (const [codec, list] of Object.entries(offsets)) {
    const sorted = [...list].sort((a, b) => a - b);
    console.log(
      `${codec}: SSIM offsets ${sorted.map((o) => o.toFixed(2)).join(", ")} dB; ` +
        `median ${sorted[Math.floor(sorted.length / 2)]?.toFixed(2)}, max ${
          sorted.at(-1)?.toFixed(2)
        }`,
    );
  }
}
