/**
 * `deno task bench:av1-options [--only NAMES] [--vmaf-ffmpeg PATH]`: SVT-AV1 options the compress
 * engine could use, each against plain SVT-AV1, at equal VMAF on the real-footage corpus.
 *
 * For each clip it cuts the first 8 s losslessly, encodes it at preset 10 and CRF 28/35/42 plainly
 * and with each option, scores every encode with VMAF v0.6.1 against the cut, and prints each
 * option's size where the plain curve reaches the same VMAF (interpolated on log size), and its
 * time. docs/compress.md records the figures and what was adopted. Needs an ffmpeg with libvmaf.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { probe } from "../src/media/probe.ts";
import { measureVmaf } from "../src/media/vmaf.ts";
import { corpusClips } from "./corpus.ts";
import { ffmpeg, requireVmafFfmpeg, scratch, type SweepPoint, vmafCrossing } from "./_common.ts";

/** The options measured, as extra ffmpeg arguments after `-c:v libsvtav1 -preset 10 -crf N`. */
const OPTIONS: Record<string, string[]> = {
  "10-bit": ["-pix_fmt", "yuv420p10le"],
  "tune=0 (visual)": ["-svtav1-params", "tune=0"],
  "film grain 4 + denoise": ["-svtav1-params", "film-grain=4:film-grain-denoise=1"],
  "film grain 8 + denoise": ["-svtav1-params", "film-grain=8:film-grain-denoise=1"],
};
const CRFS = [28, 35, 42];
const SECONDS = 8;

interface Point extends SweepPoint {
  seconds: number;
}

async function curve(reference: string, extra: string[], dir: string, vmaf: string) {
  const info = await probe(reference, { ffprobe: "ffprobe" });
  const video = info.video!;
  const points: Point[] = [];
  for (const crf of CRFS) {
    const out = join(dir, `enc-${crypto.randomUUID().slice(0, 8)}.mkv`);
    const started = performance.now();
    // deno-fmt-ignore
    await ffmpeg(["-i", reference, "-c:v", "libsvtav1", "-preset", "10", "-crf", String(crf),
      "-g", "240", ...extra, out]);
    const seconds = (performance.now() - started) / 1000;
    const bytes = (await Deno.stat(out)).size;
    const scores = await measureVmaf(out, reference, {
      ffmpeg: vmaf,
      frameRate: video.frameRate ?? 25,
      width: video.width!,
      height: video.height!,
      scratchDir: dir,
      subsample: 2,
    });
    await Deno.remove(out);
    points.push({ crf, vmaf: scores.vmaf, bytes, seconds });
  }
  return points;
}

const range = (values: number[], digits = 2) => {
  const known = values.filter(Number.isFinite);
  if (known.length === 0) return "outside the plain curve";
  const [lo, hi] = [Math.min(...known), Math.max(...known)].map((v) => v.toFixed(digits));
  return lo === hi ? `${lo}×` : `${lo}–${hi}×`;
};

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { only: { type: "string" }, "vmaf-ffmpeg": { type: "string" } },
    strict: true,
  });
  const vmaf = await requireVmafFfmpeg(values["vmaf-ffmpeg"], "bench:av1-options");
  const only = values.only?.split(",");
  const clips = (await corpusClips()).filter((c) => !only || only.some((n) => c.name.includes(n)));
  await using dir = await scratch();
  for (const clip of clips) {
    const reference = join(dir.path, "reference.mkv");
    // deno-fmt-ignore
    await ffmpeg(["-i", clip.path, "-t", String(SECONDS), "-an", "-c:v", "ffv1",
      "-pix_fmt", "yuv420p", reference]);
    const plain = await curve(reference, [], dir.path, vmaf);
    const plainSeconds = plain.reduce((sum, p) => sum + p.seconds, 0);
    for (const [name, extra] of Object.entries(OPTIONS)) {
      const points = await curve(reference, extra, dir.path, vmaf);
      // Where the plain curve reaches the same VMAF; NaN (left out) beyond its ends.
      const sizes = points.map((p) => p.bytes / (vmafCrossing(plain, p.vmaf)?.bytes ?? NaN));
      const time = points.reduce((sum, p) => sum + p.seconds, 0) / plainSeconds;
      console.log(
        `| ${clip.name} | ${name} | ${range(sizes)} | ${time.toFixed(2)}× | ` +
          points.map((p) => p.vmaf.toFixed(2)).join(" / ") + " |",
      );
    }
  }
}
