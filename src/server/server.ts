import { tmpdir } from "node:os";
import { join } from "node:path";
import { MmpError } from "../protocol/errors.ts";
import { JobQueue } from "../jobs/queue.ts";
import { findTools } from "../media/ffmpeg.ts";
import { handleConnection, type ServerContext } from "./connection.ts";
import { DEFAULT_LIMITS, type MediaLimits } from "./process.ts";
import { Storage } from "./storage.ts";

/** Options of {@linkcode serve}; every field has a default. */
export interface ServeOptions {
  /** Address to listen on. Default `0.0.0.0`. */
  hostname?: string;
  /** Port; 0 picks a free one. Default 9000. */
  port?: number;
  /** Directory for temporary files. Default `<tmp>/mmp`. */
  storageDir?: string;
  /** Quota over all uploads and outputs in flight, in bytes. Default 4 TB. */
  maxStorage?: number;
  /** ffmpeg jobs at once. Default: half the cores, at least 1. */
  jobs?: number;
  /** Seconds a client may stall before its upload is accepted. Default 60. */
  idleTimeoutSeconds?: number;
  /** Uploads slower than this many bytes per second are cut off. Default 1024. */
  minUploadBytesPerSecond?: number;
  /** Open connections allowed at once; more get `BUSY` at once. Default 1024. */
  maxConnections?: number;
  /** Decode-bomb limits: frame size, media duration, processing time. */
  limits?: Partial<MediaLimits>;
  /** The ffmpeg executable (ffprobe is looked up beside it). Default env `MMP_FFMPEG`, then PATH. */
  ffmpeg?: string;
  /** Where log lines go. Default stderr. */
  log?: (line: string) => void;
}

/** A running server. */
export interface MmpServer extends AsyncDisposable {
  /** The address it listens on, with the real port when 0 was asked for. */
  readonly addr: Deno.NetAddr;
  readonly storage: Storage;
  readonly queue: JobQueue;
  /** Settles when the server has stopped and cleaned up. */
  readonly finished: Promise<void>;
  /** Stops accepting, cancels every job, deletes every job file, closes every connection. */
  shutdown(): Promise<void>;
}

/** The default for `--jobs`: ffmpeg uses several threads itself, so one job per two cores. */
export function defaultJobs(): number {
  return Math.max(1, Math.floor(navigator.hardwareConcurrency / 2));
}

/** The default for `--storage`. */
export function defaultStorageDir(): string {
  return join(tmpdir(), "mmp");
}

/**
 * Starts an MMP server.
 *
 * @example
 * ```ts
 * await using server = await serve({ port: 0 });
 * console.log(`listening on ${server.addr.port}`);
 * ```
 */
export async function serve(options: ServeOptions = {}): Promise<MmpServer> {
  const tools = await findTools(options.ffmpeg);
  const storage = await Storage.open({
    dir: options.storageDir ?? defaultStorageDir(),
    maxBytes: options.maxStorage ?? 4e12,
  });
  const queue = new JobQueue(options.jobs ?? defaultJobs());
  const controller = new AbortController();
  const log = options.log ?? ((line: string) => console.error(`mmp: ${line}`));
  const sessions = new Set<Promise<void>>();
  const ctx: ServerContext = {
    storage,
    queue,
    tools,
    busyIps: new Set(),
    idleTimeoutMs: (options.idleTimeoutSeconds ?? 60) * 1000,
    minUploadBytesPerSecond: options.minUploadBytesPerSecond ?? 1024,
    limits: { ...DEFAULT_LIMITS, ...options.limits },
    connections: () => sessions.size,
    maxConnections: options.maxConnections ?? 1024,
    signal: controller.signal,
    log,
  };
  const listener = Deno.listen({
    hostname: options.hostname ?? "0.0.0.0",
    port: options.port ?? 9000,
  });
  const accepting = acceptLoop(listener, ctx, sessions);

  let stopping: Promise<void> | undefined;
  const shutdown = () =>
    stopping ??= (async () => {
      listener.close();
      controller.abort(
        new MmpError("SHUTTING_DOWN", "The server is shutting down and stopped your job"),
      );
      await Promise.all([accepting, queue.close(controller.signal.reason)]);
      await Promise.all(sessions);
      await storage.removeLeftovers();
    })();

  return {
    addr: listener.addr,
    storage,
    queue,
    get finished() {
      return accepting.then(() => stopping);
    },
    shutdown,
    [Symbol.asyncDispose]: shutdown,
  };
}

async function acceptLoop(
  listener: Deno.TcpListener,
  ctx: ServerContext,
  sessions: Set<Promise<void>>,
): Promise<void> {
  try {
    for await (const conn of listener) {
      conn.setNoDelay(true);
      const session = handleConnection(conn, ctx);
      sessions.add(session);
      session.finally(() => sessions.delete(session));
    }
  } catch (err) {
    if (!ctx.signal.aborted) throw err;
  }
}
