/**
 * `deno task bench:compress [--quick] [--dir DIR]`: the compress engine against ffmpeg's defaults
 * and a HandBrake-"Fast"-like encode, on generated clips of several kinds and any videos in DIR.
 * Writes the table and an SVG chart to docs/benchmarks.md.
 */
import { basename, extname, join } from "node:path";
import { runJob } from "../src/client/client.ts";
import { probe } from "../src/media/probe.ts";
import { measureSsim } from "../src/media/ssim.ts";
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
  seconds: Record<string, number>;
  codec: string;
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await fn();
  return [value, (performance.now() - started) / 1000];
}

async function benchClip(clip: Clip, dir: string, port: number): Promise<Row> {
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
  row.ssim.mmp = await measureSsim(result.output, clip.path, ssimOptions);
  for (const [name, args] of Object.entries(BASELINES)) {
    const output = `${base}.${name}.mp4`;
    const [, seconds] = await timed(() => ffmpeg(["-i", clip.path, ...args, output]));
    row.sizes[name] = (await Deno.stat(output)).size;
    row.seconds[name] = seconds;
    row.ssim[name] = await measureSsim(output, clip.path, ssimOptions);
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
  const flags = benchFlags(Deno.args);
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
    rows.push(await benchClip(clip, dir.path, server.addr.port));
    console.log(table(rows).split("\n").at(-1));
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
    }× (target ≥ 1× for ≤720p).`;
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
      }\n\n${summary}\n\n![size vs SSIM](compress_chart.svg)`,
    );
  }
}
