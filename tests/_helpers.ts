/** Helpers for end-to-end tests: generated media, a real server on port 0, raw MMP connections. */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { type MmpServer, serve, type ServeOptions } from "../src/server/server.ts";
import { type ClientConn, connectTo } from "../src/client/socket.ts";
import { type FrameHead, FrameReader } from "../src/protocol/frame_reader.ts";
import { writeAll } from "../src/protocol/frame_writer.ts";
import { encodeFrameHead } from "../src/protocol/frame.ts";
import { type MediaInfo, probe } from "../src/media/probe.ts";

/** The permission flags of `deno task build`: the CLI in tests runs with exactly these. */
export async function buildPermissions(): Promise<string[]> {
  const deno = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  return String(deno.tasks.build).split(" ").filter((arg) => arg.startsWith("--allow-"));
}

/** Options of {@linkcode makeMedia}. */
export interface MediaSpec {
  /** Seconds. Default 2. */
  duration?: number;
  /** `WxH`. Default 320x240. */
  size?: string;
  /** Frame rate. Default 25. */
  rate?: number;
  /** Include a sine sound track. Default true. */
  audio?: boolean;
  /** Include video. Default true. */
  video?: boolean;
  /** ffmpeg output options for codecs. Default H.264 ultrafast + AAC. */
  codecArgs?: string[];
}

/** Writes a generated clip (lavfi `testsrc2` + `sine`) to `path`; the extension picks the container. */
export async function makeMedia(path: string, spec: MediaSpec = {}): Promise<string> {
  const duration = spec.duration ?? 2;
  const args: string[] = [];
  if (spec.video !== false) {
    args.push(
      "-f",
      "lavfi",
      "-i",
      `testsrc2=size=${spec.size ?? "320x240"}:rate=${spec.rate ?? 25}:duration=${duration}`,
    );
  }
  if (spec.audio !== false) {
    args.push("-f", "lavfi", "-i", `sine=frequency=440:sample_rate=44100:duration=${duration}`);
  }
  const codecs = spec.codecArgs ??
    ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"];
  await ffmpeg([...args, ...codecs, path]);
  return path;
}

/**
 * An 8 s FLV that is ffmpeg's default encode already (x264 medium, CRF 23): FLV takes no AV1, so
 * compress has nothing smaller at the same quality and returns it as it is.
 */
export function makeDefaultEncodeFlv(dir: string): Promise<string> {
  return makeMedia(join(dir, "default.flv"), {
    duration: 8,
    codecArgs: ["-c:v", "libx264", "-preset", "medium", "-crf", "23", "-c:a", "aac"],
  });
}

/** Runs ffmpeg quietly (overwriting outputs); throws with its log on failure. */
export async function ffmpeg(args: string[]): Promise<void> {
  const { success, stderr } = await new Deno.Command("ffmpeg", {
    args: ["-hide_banner", "-loglevel", "error", "-y", ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!success) throw new Error(`ffmpeg failed: ${new TextDecoder().decode(stderr)}`);
}

/** ffprobe's view of a file. */
export function probeFile(path: string): Promise<MediaInfo> {
  return probe(path, { ffprobe: "ffprobe" });
}

/** A server for one test, with its own storage directory and captured log. */
export interface TestServer extends AsyncDisposable {
  server: MmpServer;
  port: number;
  /** The HTTP API's port (0 when a test turned HTTP off). */
  httpPort: number;
  /** `http://127.0.0.1:PORT`, the HTTP API's base URL. */
  httpUrl: string;
  storageDir: string;
  logs: string[];
}

/** Starts a real server on 127.0.0.1, port 0 (and HTTP on port 0), with its own temporary storage. */
export async function startServer(options: ServeOptions = {}): Promise<TestServer> {
  const storageDir = await Deno.makeTempDir({ prefix: "mmp-test-storage-" });
  const logs: string[] = [];
  const server = await serve({
    hostname: "127.0.0.1",
    port: 0,
    storageDir,
    idleTimeoutSeconds: 10,
    http: { port: 0 },
    log: (line) => logs.push(line),
    ...options,
  });
  const httpPort = server.httpAddr?.port ?? 0;
  return {
    server,
    port: server.addr.port,
    httpPort,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    storageDir,
    logs,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
      await Deno.remove(storageDir, { recursive: true });
    },
  };
}

/** Names of the files in a directory. */
export async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

/** Waits (bounded) until `check` holds; returns whether it did. */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 5000) {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return await check();
}

/** Waits until the server's storage holds no file; returns what is left. */
export async function storageSettles(dir: string, ms = 5000): Promise<string[]> {
  await eventually(async () => (await listDir(dir)).length === 0, ms);
  return await listDir(dir);
}

/** A raw MMP connection for tests that need to misbehave or look at single frames. */
export class RawClient implements Disposable {
  readonly conn: ClientConn;
  readonly reader: FrameReader;

  private constructor(conn: ClientConn) {
    this.conn = conn;
    this.reader = new FrameReader(conn, { bufferSize: 1 << 16 });
  }

  static async open(port: number, localAddress?: string): Promise<RawClient> {
    return new RawClient(
      await connectTo({
        hostname: "127.0.0.1",
        port,
        ...(localAddress === undefined ? {} : { localAddress }),
      }),
    );
  }

  /** Sends bytes as they are. */
  send(bytes: Uint8Array): Promise<void> {
    return writeAll(this.conn, bytes);
  }

  /** Sends a frame head announcing `payloadSize` payload bytes (which the test sends, or not). */
  sendHead(json: Record<string, unknown>, mediaType = "", payloadSize = 0): Promise<void> {
    return this.send(encodeFrameHead(json, mediaType, payloadSize));
  }

  /** The next frame's head; the payload, if any, is left on the wire. */
  async nextFrame(): Promise<FrameHead | null> {
    return await this.reader.readFrameHead();
  }

  [Symbol.dispose](): void {
    try {
      this.conn.close();
    } catch { /* closed already */ }
  }
}

/** Process ids `pgrep ARGS` lists. */
async function pgrep(args: string[]): Promise<string[]> {
  const { stdout } = await new Deno.Command("pgrep", {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(stdout).split("\n").filter(Boolean);
}

/** ffmpeg processes this test process started (the in-process servers' jobs). */
export function ffmpegChildren(): Promise<string[]> {
  return pgrep(["-P", String(Deno.pid), "ffmpeg"]);
}

/** ffmpeg processes whose command line mentions `text` (e.g. a storage directory), any parent. */
export function ffmpegUsing(text: string): Promise<string[]> {
  return pgrep(["-f", `^\\S*ffmpeg .*${text.replace(/[^\w/.-]/g, ".")}`]);
}

/** `mmp serve` as its own process, started the way a user starts it. */
export interface ServerProcess extends AsyncDisposable {
  child: Deno.ChildProcess;
  port: number;
  /** Resolves when the process has ended, with its exit code and everything it wrote to stderr. */
  ended(): Promise<{ code: number; stderr: string }>;
}

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));

/** Starts `deno run main.ts serve` on a free loopback port; SIGKILLed on dispose if still running. */
export async function spawnServer(storageDir: string): Promise<ServerProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    // deno-fmt-ignore
    args: ["run", ...(await buildPermissions()), MAIN, "serve", "--port", "0", "--host", "127.0.0.1",
      "--http", "0", "--storage", storageDir],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const first = (await lines.read()).value ?? "";
  const drained = (async () => {
    while (!(await lines.read()).done);
  })();
  let ending: Promise<{ code: number; stderr: string }> | undefined;
  const ended = () =>
    ending ??= Promise.all([child.status, stderr, drained]).then(([status, text]) => ({
      code: status.code,
      stderr: text,
    }));
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch { /* already ended */ }
  };
  const port = Number(/^mmp listening on 127\.0\.0\.1:(\d+)/.exec(first)?.[1]);
  if (!port) {
    kill();
    throw new Error(`mmp serve did not start: ${first} ${(await ended()).stderr}`);
  }
  return {
    child,
    port,
    ended,
    async [Symbol.asyncDispose]() {
      kill();
      await ended();
    },
  };
}

/** A temporary directory for one test's media, removed on dispose. */
export async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "mmp-test-" });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  };
}

export { join };

/**
 * An ffmpeg with libvmaf to score with (env MMP_VMAF_FFMPEG, else the static one a Python venv has
 * from ../shared/tools), or undefined where there is none: VMAF checks are then skipped.
 */
export function vmafFfmpeg(): string | undefined {
  const fromEnv = Deno.env.get("MMP_VMAF_FFMPEG");
  if (fromEnv) return fromEnv;
  try {
    const { stdout, success } = new Deno.Command("python3", {
      args: ["-c", "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())"],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    return success ? new TextDecoder().decode(stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Waits for the storage quota to come back to 0: a job releases it one step after deleting its
 * files, so a check right after the files are gone may read it in between.
 */
export async function quotaReleased(srv: TestServer): Promise<void> {
  assert.ok(await eventually(() => srv.server.storage.reserved === 0), "quota released");
}
