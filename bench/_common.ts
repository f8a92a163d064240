/** Shared pieces of the benchmarks: argument parsing, scratch space, report sections. */
import { parseArgs } from "node:util";
import { hasLibvmaf } from "../src/media/vmaf.ts";

/** Flags every bench accepts. */
export interface BenchFlags {
  quick: boolean;
  dir?: string;
}

export function benchFlags(args: string[]): BenchFlags {
  const { values } = parseArgs({
    args,
    options: { quick: { type: "boolean" }, dir: { type: "string" } },
    strict: true,
  });
  return { quick: values.quick ?? false, ...(values.dir ? { dir: values.dir } : {}) };
}

/** A scratch directory under .bench-tmp/, removed on dispose. */
export async function scratch(): Promise<{ path: string } & AsyncDisposable> {
  await Deno.mkdir(".bench-tmp", { recursive: true });
  const path = await Deno.makeTempDir({ dir: ".bench-tmp" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/** Runs ffmpeg quietly; throws with its log on failure. */
export async function ffmpeg(args: string[]): Promise<void> {
  const { success, stderr } = await new Deno.Command("ffmpeg", {
    args: ["-hide_banner", "-nostdin", "-loglevel", "error", "-y", ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!success) throw new Error(`ffmpeg ${args.join(" ")}: ${new TextDecoder().decode(stderr)}`);
}

/** Replaces the section between `<!-- NAME:start -->` and `<!-- NAME:end -->` in a Markdown file. */
export async function writeSection(path: string, name: string, body: string): Promise<void> {
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  let text = await Deno.readTextFile(path).catch(() => "# Benchmarks\n");
  const block = `${start}\n${body.trim()}\n${end}`;
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  text = from >= 0 && to > from
    ? text.slice(0, from) + block + text.slice(to + end.length)
    : `${text.trimEnd()}\n\n${block}\n`;
  // Not run through `deno fmt`: deno.json leaves the generated report out of its checks.
  await Deno.writeTextFile(path, text);
}

/** Date, machine and tool versions for a report header. */
export async function machineLine(): Promise<string> {
  const cpu = (await Deno.readTextFile("/proc/cpuinfo").catch(() => ""))
    .match(/model name\s*:\s*(.*)/)?.[1] ?? "unknown CPU";
  const { stdout } = await new Deno.Command("ffmpeg", { args: ["-version"], stdout: "piped" })
    .output();
  const ff = new TextDecoder().decode(stdout).split("\n")[0]?.split(" ").slice(0, 3).join(" ");
  return `${
    new Date().toISOString().slice(0, 16).replace("T", " ")
  } UTC · ${navigator.hardwareConcurrency} cores · ` +
    `${cpu} · Deno ${Deno.version.deno} · ${ff}`;
}

export function geomean(values: number[]): number {
  return Math.exp(values.reduce((sum, v) => sum + Math.log(v), 0) / values.length);
}

/** The `--vmaf-ffmpeg` path (or env MMP_VMAF_FFMPEG) when it has libvmaf; else says so and exits. */
export async function requireVmafFfmpeg(flag: string | undefined, bench: string): Promise<string> {
  const path = flag ?? Deno.env.get("MMP_VMAF_FFMPEG");
  if (!path || !await hasLibvmaf(path)) {
    console.error(`${bench}: needs an ffmpeg with libvmaf (--vmaf-ffmpeg PATH)`);
    Deno.exit(2);
  }
  return path;
}

/** One encode of a CRF sweep. */
export interface SweepPoint {
  crf: number;
  vmaf: number;
  bytes: number;
}

/**
 * Where a CRF sweep's VMAF falls through `vmaf`: the points either side, how far between them
 * (`t`, 0..1) and the size there, interpolated on log size; undefined if it never does.
 */
export function vmafCrossing<P extends SweepPoint>(
  points: P[],
  vmaf: number,
): { a: P; b: P; t: number; bytes: number } | undefined {
  const sorted = [...points].sort((a, b) => a.crf - b.crf);
  for (let i = 0; i + 1 < sorted.length; i++) {
    const [a, b] = [sorted[i]!, sorted[i + 1]!];
    if (a.vmaf >= vmaf && b.vmaf < vmaf) {
      const t = (a.vmaf - vmaf) / (a.vmaf - b.vmaf);
      return { a, b, t, bytes: a.bytes * (b.bytes / a.bytes) ** t };
    }
  }
  return undefined;
}
