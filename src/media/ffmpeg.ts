/** Paths of the ffmpeg and ffprobe executables. */
export interface Tools {
  ffmpeg: string;
  ffprobe: string;
  /**
   * An ffmpeg with libvmaf that only scores (never encodes or reads an upload): the compress
   * search targets VMAF with it. Absent: the search falls back to SSIM (see `metric.ts`).
   */
  vmaf?: string;
  /**
   * Time a compress job aims for, as a fixed multiple of ffmpeg's default encode of the same video
   * (`--compress-budget`). Default: keep up with the video, within 1.5× to 6× that encode.
   */
  compressBudget?: number;
}

/** Thrown when ffmpeg or ffprobe cannot be started at all. */
export class ToolMissingError extends Error {
  constructor(tool: string, why?: string) {
    super(
      why ??
        `Cannot run ${tool}: install ffmpeg (Debian/Ubuntu: apt-get install -y ffmpeg; ` +
          `macOS: brew install ffmpeg) or pass --ffmpeg PATH / set MMP_FFMPEG`,
    );
    this.name = "ToolMissingError";
  }
}

/** Thrown when ffmpeg exits with a non-zero status; `log` is for the server log only. */
export class FfmpegError extends Error {
  readonly exitCode: number;
  readonly log: string;
  constructor(tool: string, exitCode: number, log: string) {
    super(`${tool} failed with exit code ${exitCode}`);
    this.name = "FfmpegError";
    this.exitCode = exitCode;
    this.log = log;
  }
}

/**
 * The tools to use: `ffmpeg` from the option, else env `MMP_FFMPEG`, else PATH; ffprobe beside it.
 * Checks that both start, so a missing install is reported once, clearly, at startup.
 */
export async function findTools(ffmpeg?: string, vmafFfmpeg?: string): Promise<Tools> {
  const path = ffmpeg ?? Deno.env.get("MMP_FFMPEG") ?? "ffmpeg";
  const slash = path.lastIndexOf("/");
  const ffprobe = Deno.env.get("MMP_FFPROBE") ??
    (slash >= 0 ? `${path.slice(0, slash + 1)}ffprobe` : "ffprobe");
  const tools: Tools = { ffmpeg: path, ffprobe };
  await Promise.all([checkRuns(tools.ffmpeg), checkRuns(tools.ffprobe)]);
  const vmaf = await findVmafScorer(path, vmafFfmpeg);
  if (vmaf) tools.vmaf = vmaf;
  return tools;
}

/**
 * The ffmpeg that scores VMAF: the one asked for (which must have libvmaf), else the main ffmpeg
 * when it has libvmaf itself, else none.
 */
async function findVmafScorer(ffmpeg: string, asked?: string): Promise<string | undefined> {
  if (asked !== undefined) {
    if (await hasLibvmaf(asked)) return asked;
    throw new ToolMissingError(
      asked,
      `${asked} cannot score VMAF: it has no libvmaf filter (or does not run); pass an ffmpeg ` +
        "built with libvmaf to --vmaf-ffmpeg, or leave it out to search on SSIM",
    );
  }
  return await hasLibvmaf(ffmpeg) ? ffmpeg : undefined;
}

const detectedVmaf = new Map<string, Promise<boolean>>();

/** Whether `ffmpeg` has the libvmaf filter (asked once per path). */
export function hasLibvmaf(ffmpeg: string): Promise<boolean> {
  let found = detectedVmaf.get(ffmpeg);
  if (!found) {
    found = runForOutput(ffmpeg, ["-hide_banner", "-filters"]).then(
      (text) => /^\s*\S+\s+libvmaf\s/m.test(text),
      () => false,
    );
    detectedVmaf.set(ffmpeg, found);
  }
  return found;
}

async function checkRuns(tool: string): Promise<void> {
  try {
    const { success } = await new Deno.Command(tool, {
      args: ["-hide_banner", "-version"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    if (!success) throw new Error("non-zero exit");
  } catch {
    throw new ToolMissingError(tool);
  }
}

/**
 * A command for a media tool that dies with the server, even when the server is SIGKILLed: Linux's
 * parent-death signal, set by util-linux `setpriv --pdeathsig KILL` just before it execs the tool
 * (same pid, so killing the child still kills the tool). Without setpriv the tool runs directly,
 * and after a crash an orphan finishes its job; the next start still deletes its files.
 */
export function toolCommand(
  tool: string,
  options: Deno.CommandOptions & { args: string[] },
): Deno.Command {
  const setpriv = findSetpriv();
  if (!setpriv) return new Deno.Command(tool, options);
  return new Deno.Command(setpriv, {
    ...options,
    args: ["--pdeathsig", "KILL", "--", tool, ...options.args],
  });
}

let setprivPath: string | null | undefined;

/** util-linux `setpriv`, looked up once, on Linux only. */
function findSetpriv(): string | undefined {
  if (setprivPath === undefined) {
    setprivPath = null;
    if (Deno.build.os === "linux") {
      for (const dir of ["/usr/bin", "/bin"]) {
        try {
          if (Deno.statSync(`${dir}/setpriv`).isFile) setprivPath = `${dir}/setpriv`;
        } catch { /* not there, or not readable */ }
        if (setprivPath) break;
      }
    }
  }
  return setprivPath ?? undefined;
}

/** Keeps only the last `max` characters of a growing log. */
class LogTail {
  #text = "";
  constructor(readonly max = 8192) {}
  push(chunk: string): void {
    this.#text = (this.#text + chunk).slice(-this.max);
  }
  toString(): string {
    return this.#text;
  }
}

/** SIGKILLs the child when `signal` aborts, until disposed. */
function killOnAbort(child: Deno.ChildProcess, signal: AbortSignal | undefined): Disposable {
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
  };
  signal?.addEventListener("abort", kill, { once: true });
  return { [Symbol.dispose]: () => signal?.removeEventListener("abort", kill) };
}

/** Options of {@linkcode runFfmpeg}. */
export interface RunFfmpegOptions {
  /** The ffmpeg executable. */
  ffmpeg: string;
  /** Kills ffmpeg (SIGKILL) when aborted; the call then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Media duration in seconds, to turn ffmpeg's `out_time_us` into a fraction. */
  durationSeconds?: number;
  /** Called with the fraction done, 0..1. */
  onProgress?: (fraction: number) => void;
}

/** The flags every run gets: quiet, no stdin, progress on stdout. */
const BASE_ARGS = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y"];

/** Runs ffmpeg with `args`, reporting progress; throws {@linkcode FfmpegError} unless it exits 0. */
export async function runFfmpeg(args: string[], options: RunFfmpegOptions): Promise<void> {
  options.signal?.throwIfAborted();
  const child = toolCommand(options.ffmpeg, {
    args: [...BASE_ARGS, "-progress", "pipe:1", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  using _ = killOnAbort(child, options.signal);
  const log = new LogTail();
  const [status] = await Promise.all([
    child.status,
    readProgress(child.stdout, options),
    drain(child.stderr, log),
  ]);
  options.signal?.throwIfAborted();
  if (!status.success) throw new FfmpegError("ffmpeg", status.code, log.toString());
}

async function drain(stream: ReadableStream<Uint8Array>, log: LogTail): Promise<void> {
  for await (const text of stream.pipeThrough(new TextDecoderStream())) log.push(text);
}

async function readProgress(
  stream: ReadableStream<Uint8Array>,
  options: RunFfmpegOptions,
): Promise<void> {
  const duration = options.durationSeconds ?? 0;
  let pending = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    const lines = (pending + text).split("\n");
    pending = lines.pop() ?? "";
    if (!options.onProgress || duration <= 0) continue;
    for (const line of lines) {
      if (!line.startsWith("out_time_us=")) continue;
      const micros = Number(line.slice("out_time_us=".length));
      if (Number.isFinite(micros) && micros >= 0) {
        options.onProgress(Math.min(1, micros / 1e6 / duration));
      }
    }
  }
}

/** Runs a tool to completion and returns its stdout; throws {@linkcode FfmpegError} on failure. */
export async function runForOutput(
  tool: string,
  args: string[],
  signal?: AbortSignal,
): Promise<string> {
  const child = toolCommand(tool, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  using _ = killOnAbort(child, signal);
  const { success, code, stdout, stderr } = await child.output();
  signal?.throwIfAborted();
  if (!success) throw new FfmpegError(tool, code, new TextDecoder().decode(stderr).slice(-8192));
  return new TextDecoder().decode(stdout);
}
