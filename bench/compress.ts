/**
 * `deno task bench:compress [--quick] [--dir DIR] [--vmaf-ffmpeg PATH]`: the compress engine
 * against ffmpeg's defaults and a HandBrake-"Fast"-like encode, on generated clips of several kinds
 * and any videos in DIR. Scores SSIM always, and VMAF and VMAF NEG with an ffmpeg that has libvmaf
 * (`--vmaf-ffmpeg`, env `MMP_VMAF_FFMPEG`; the static ffmpeg in ../shared/tools has it).
 * Writes the table and an SVG chart to docs/benchmarks.md.
 */
import { basename, extname, join } from "node:path";
import { runJob } from "../src/client/client.ts";
import { probe } from "../src/media/probe.ts";
import { measureSsim } from "../src/media/ssim.ts";
import { hasLibvmaf, measureVmaf, type VmafScores } from "../src/media/vmaf.ts";
import { serve } from "../src/server/server.ts";
import {
  benchFlags,
  ffmpeg,
  formatDocs,
  geomean,
  machineLine,
  scratch,
  writeSection,
} from "./_common.ts";

interface Clip {
  name: string;
  path: string;
}

/** Synthetic sources compress unrealistically, so the kinds vary: grain, text, flat colour, … */
async function generateClips(dir: string, quick: boolean): Promise<Clip[]> {
  const size = quick ? "320x240" : "1280x720";
  const seconds = quick ? 3 : 10;
  const x264 = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "14", "-pix_fmt", "yuv420p"];
  const sound = ["-f", "lavfi", "-i", "sine=frequency=330"]; // -shortest ends it with the video
  const clips: [string, string, string[]][] = [
    ["camera-grain.mp4", `testsrc2=size=${size}:rate=30:duration=${seconds},noise=alls=7:allf=t`, [
      ...x264,
      "-c:a",
      "aac",
      "-b:a",
      "192k",
    ]],
    ["screen-text.mp4", `testsrc=size=${size}:rate=30:duration=${seconds}`, [
      ...x264,
      "-c:a",
      "aac",
    ]],
    [
      "animation-flat.mkv",
      `cellauto=rule=110:size=${
        size.replace("x", "x")
      }:rate=24,format=yuv420p,trim=duration=${seconds}`,
      [...x264, "-c:a", "pcm_s16le"],
    ],
    ["low-bitrate.mp4", `testsrc2=size=${size}:rate=30:duration=${seconds},noise=alls=4:allf=t`, [
      "-c:v",
      "libx264",
      "-preset",
      "medium",
      "-b:v",
      quick ? "150k" : "600k",
      "-c:a",
      "aac",
      "-b:a",
      "64k",
    ]],
    [
      "old-codec.avi",
      `testsrc2=size=${
        quick ? "320x240" : "640x480"
      }:rate=25:duration=${seconds},noise=alls=3:allf=t`,
      ["-c:v", "mpeg4", "-q:v", "3", "-c:a", "libmp3lame", "-b:a", "192k"],
    ],
  ];
  if (!quick) {
    // A longer clip shows the search's fixed cost: its share of the time shrinks with length.
    clips.push([
      "camera-40s.mp4",
      `testsrc2=size=${size}:rate=30:duration=40,noise=alls=3:allf=t`,
      ["-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-c:a", "aac", "-b:a", "192k"],
    ]);
  }
  const out: Clip[] = [];
  for (const [name, source, codecs] of clips) {
    const path = join(dir, name);
    await ffmpeg(["-f", "lavfi", "-i", source, ...sound, "-shortest", ...codecs, path]);
    out.push({ name, path });
  }
  return out;
}

async function userClips(dir: string | undefined): Promise<Clip[]> {
  if (!dir) return [];
  const clips: Clip[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && /\.(mp4|mkv|mov|webm|avi|ts|flv)$/i.test(entry.name)) {
      clips.push({ name: entry.name, path: join(dir, entry.name) });
    }
  }
  return clips;
}

const BASELINES: Record<string, string[]> = {
  "ffmpeg-default": [
    "-c:v",
    "libx264",
    "-preset",
    "medium",
    "-crf",
    "23",
    "-c:a",
    "aac",
    "-b:a",
    "128k",
  ],
  "handbrake-fast": [
    "-c:v",
    "libx264",
    "-preset",
    "fast",
    "-crf",
    "22",
    "-c:a",
    "aac",
    "-b:a",
    "160k",
  ],
};

interface Row {
  clip: string;
  input: number;
  duration: number;
  sizes: Record<string, number>;
  ssim: Record<string, number>;
  /** VMAF and VMAF NEG per encoder, when an ffmpeg with libvmaf was found. */
  vmaf: Record<string, VmafScores>;
  seconds: Record<string, number>;
  codec: string;
}

/** The ffmpeg that scores VMAF (a measuring instrument, not the engine's), or undefined. */
async function vmafFfmpeg(path: string | undefined): Promise<string | undefined> {
  const candidate = path ?? Deno.env.get("MMP_VMAF_FFMPEG");
  if (!candidate) return undefined;
  if (await hasLibvmaf(candidate)) return candidate;
  throw new Error(`${candidate} has no libvmaf filter: it cannot score VMAF`);
}

/** `--vmaf-ffmpeg PATH` taken out of the arguments; the rest go to `benchFlags`. */
function splitVmafFlag(args: string[]): { rest: string[]; path?: string } {
  const at = args.findIndex((a) => a === "--vmaf-ffmpeg" || a.startsWith("--vmaf-ffmpeg="));
  if (at < 0) return { rest: args };
  const inline = args[at]!.includes("=") ? args[at]!.split("=").slice(1).join("=") : undefined;
  const path = inline ?? args[at + 1];
  const rest = args.filter((_, i) => i !== at && (inline !== undefined || i !== at + 1));
  return path ? { rest, path } : { rest };
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await fn();
  return [value, (performance.now() - started) / 1000];
}

async function benchClip(
  clip: Clip,
  dir: string,
  port: number,
  vmaf: string | undefined,
): Promise<Row> {
  const info = await probe(clip.path, { ffprobe: "ffprobe" });
  const video = info.video!;
  const ssimOptions = {
    ffmpeg: "ffmpeg",
    frameRate: video.frameRate ?? 25,
    width: video.width!,
    height: video.height!,
  };
  const row: Row = {
    clip: clip.name,
    input: (await Deno.stat(clip.path)).size,
    duration: info.duration,
    sizes: {},
    ssim: {},
    vmaf: {},
    seconds: {},
    codec: "",
  };
  const base = join(dir, basename(clip.path, extname(clip.path)));
  const [result, mmpSeconds] = await timed(() =>
    runJob({
      hostname: "127.0.0.1",
      port,
      request: { op: "compress" },
      input: clip.path,
      output: `${base}.mmp${extname(clip.path)}`,
      matchExtension: true,
    })
  );
  row.sizes.mmp = result.size;
  row.seconds.mmp = mmpSeconds;
  row.codec = `${result.stats.codec}${
    result.stats.kept_input ? " (input kept)" : ` crf ${result.stats.crf}`
  }`;
  const score = async (name: string, output: string) => {
    row.ssim[name] = await measureSsim(output, clip.path, ssimOptions);
    if (vmaf) {
      row.vmaf[name] = await measureVmaf(output, clip.path, {
        ...ssimOptions,
        ffmpeg: vmaf,
        scratchDir: dir,
      });
    }
  };
  await score("mmp", result.output);
  for (const [name, args] of Object.entries(BASELINES)) {
    const output = `${base}.${name}.mp4`;
    const [, seconds] = await timed(() => ffmpeg(["-i", clip.path, ...args, output]));
    row.sizes[name] = (await Deno.stat(output)).size;
    row.seconds[name] = seconds;
    await score(name, output);
  }
  return row;
}

const MB = (bytes: number) => (bytes / 1e6).toFixed(2);

function table(rows: Row[]): string {
  const lines = [
    "| clip | input MB | mmp MB (codec) | ffmpeg-default MB | HandBrake-fast MB | mmp / default | SSIM mmp | SSIM default | SSIM HB | mmp s (× realtime) | default s | HB s |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    const ratio = r.sizes.mmp! / r.sizes["ffmpeg-default"]!;
    lines.push(
      `| ${r.clip} | ${MB(r.input)} | ${MB(r.sizes.mmp!)} (${r.codec}) | ${
        MB(r.sizes["ffmpeg-default"]!)
      } | ${MB(r.sizes["handbrake-fast"]!)} | ${ratio.toFixed(3)} | ${r.ssim.mmp!.toFixed(4)} | ${
        r.ssim["ffmpeg-default"]!.toFixed(4)
      } | ${r.ssim["handbrake-fast"]!.toFixed(4)} | ${r.seconds.mmp!.toFixed(1)} (${
        (r.duration / r.seconds.mmp!).toFixed(2)
      }×) | ${r.seconds["ffmpeg-default"]!.toFixed(1)} | ${
        r.seconds["handbrake-fast"]!.toFixed(1)
      } |`,
    );
  }
  return lines.join("\n");
}

/** VMAF and VMAF NEG of each encode, where they were measured. */
function vmafTable(rows: Row[]): string {
  const names = ["mmp", "ffmpeg-default", "handbrake-fast"];
  const lines = [
    `| clip | ${names.map((n) => `VMAF ${n} | NEG ${n}`).join(" | ")} | mmp − default |`,
    `|---|${names.map(() => "---|---|").join("")}---|`,
  ];
  for (const r of rows) {
    const cells = names.map((n) =>
      `${r.vmaf[n]!.vmaf.toFixed(2)} | ${r.vmaf[n]!.vmafNeg.toFixed(2)}`
    );
    const gap = r.vmaf.mmp!.vmaf - r.vmaf["ffmpeg-default"]!.vmaf;
    lines.push(`| ${r.clip} | ${cells.join(" | ")} | ${gap >= 0 ? "+" : ""}${gap.toFixed(2)} |`);
  }
  return lines.join("\n");
}

/** The VMAF line of the summary: the worst per-clip gap, or why there is none. */
function vmafSummary(rows: Row[], vmaf: string | undefined): string {
  if (!vmaf) {
    return "VMAF: **not measured** — no ffmpeg with libvmaf given (pass `--vmaf-ffmpeg PATH` or " +
      "set MMP_VMAF_FFMPEG; the static ffmpeg in ../shared/tools has libvmaf).";
  }
  const gaps = rows.map((r) => r.vmaf.mmp!.vmaf - r.vmaf["ffmpeg-default"]!.vmaf);
  const negGaps = rows.map((r) => r.vmaf.mmp!.vmafNeg - r.vmaf["ffmpeg-default"]!.vmafNeg);
  const signed = (v: number) => `${v >= 0 ? "+" : ""}${v.toFixed(2)}`;
  return `Worst VMAF difference vs ffmpeg-default: **${signed(Math.min(...gaps))}** ` +
    `(target ≥ −1.0; VMAF NEG: ${signed(Math.min(...negGaps))}), ${
      gaps.filter((g) => g < -1).length
    } of ${rows.length} clips more than 1 point below.`;
}

/** Size relative to ffmpeg-default (x) against SSIM (y), one dot per clip and encoder. */
function chart(rows: Row[]): string {
  const w = 640, h = 360, pad = 50;
  const all = rows.flatMap((r) =>
    Object.keys(r.sizes).map((k) => ({
      k,
      x: r.sizes[k]! / r.sizes["ffmpeg-default"]!,
      y: r.ssim[k]!,
    }))
  );
  const maxX = Math.max(1.2, ...all.map((p) => p.x)),
    minY = Math.min(...all.map((p) => p.y)) - 0.005,
    maxY = 1;
  const colors: Record<string, string> = {
    mmp: "#d62728",
    "ffmpeg-default": "#1f77b4",
    "handbrake-fast": "#2ca02c",
  };
  const px = (x: number) => pad + (x / maxX) * (w - 2 * pad);
  const py = (y: number) => h - pad - ((y - minY) / (maxY - minY)) * (h - 2 * pad);
  const dots = all.map((p) =>
    `<circle cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="5" fill="${colors[p.k]}"/>`
  ).join("");
  const legend = Object.entries(colors).map(([k, c], i) =>
    `<text x="${w - 190}" y="${20 + i * 16}" fill="${c}" font-size="12">● ${k}</text>`
  ).join("");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif">` +
    `<rect width="100%" height="100%" fill="white"/>` +
    `<line x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${
      h - pad
    }" stroke="black"/><line x1="${pad}" y1="${pad}" x2="${pad}" y2="${h - pad}" stroke="black"/>` +
    `<text x="${w / 2 - 90}" y="${h - 12}" font-size="12">size relative to ffmpeg-default (0..${
      maxX.toFixed(1)
    })</text>` +
    `<text x="8" y="${pad - 10}" font-size="12">SSIM (${
      minY.toFixed(3)
    }..1)</text>${dots}${legend}</svg>`;
}

if (import.meta.main) {
  const { rest, path: vmafPath } = splitVmafFlag(Deno.args);
  const flags = benchFlags(rest);
  const vmaf = await vmafFfmpeg(vmafPath);
  await using dir = await scratch();
  const clips = [...(await generateClips(dir.path, flags.quick)), ...(await userClips(flags.dir))];
  await using server = await serve({
    hostname: "127.0.0.1",
    port: 0,
    storageDir: join(dir.path, "storage"),
    log: () => {},
  });
  const rows: Row[] = [];
  for (const clip of clips) {
    rows.push(await benchClip(clip, dir.path, server.addr.port, vmaf));
    console.log(table(rows).split("\n").at(-1));
    if (vmaf) console.log(vmafTable(rows).split("\n").at(-1));
  }
  const ratios = rows.map((r) => r.sizes.mmp! / r.sizes["ffmpeg-default"]!);
  const ssimGap = Math.min(...rows.map((r) => r.ssim.mmp! - r.ssim["ffmpeg-default"]!));
  const neverBigger = rows.every((r) => r.sizes.mmp! <= r.input);
  const realtime = rows.map((r) => r.duration / r.seconds.mmp!);
  const summary =
    `Geometric mean size vs ffmpeg-default: **${geomean(ratios).toFixed(3)}×** (target ≤ 0.60). ` +
    `Worst SSIM difference vs ffmpeg-default: **${ssimGap >= 0 ? "+" : ""}${
      ssimGap.toFixed(4)
    }** (target ≥ −0.005). ` +
    `Never bigger than the input: **${
      neverBigger ? "yes" : "NO"
    }**. Realtime factor (search included): ` +
    `${Math.min(...realtime).toFixed(2)}×–${
      Math.max(...realtime).toFixed(2)
    }× (target ≥ 1× for ≤720p). ${vmafSummary(rows, vmaf)}`;
  console.log(
    flags.quick
      ? `${summary}\n(quick mode: 3 s 320x240 clips check that the bench runs; the targets are for the full run)`
      : summary,
  );
  if (!flags.quick) {
    await Deno.writeTextFile("docs/compress_chart.svg", chart(rows));
    await formatDocs("docs/compress_chart.svg");
    await writeSection(
      "docs/benchmarks.md",
      "compress",
      `## Compression (\`deno task bench:compress\`)\n\n${await machineLine()}\n\n${
        table(rows)
      }\n\n${
        vmaf ? `${vmafTable(rows)}\n\n` : ""
      }${summary}\n\n![size vs SSIM](compress_chart.svg)`,
    );
  }
}
