import { tmpdir } from "node:os";
import { join } from "node:path";
import { MmpError } from "../protocol/errors.ts";
import { JobCore } from "../jobs/core.ts";
import { LocalIpSlots } from "../jobs/ip_slots.ts";
import { DEFAULT_LIMITS, type MediaLimits } from "../jobs/process.ts";
import { JobQueue } from "../jobs/queue.ts";
import { Storage } from "../jobs/storage.ts";
import { findTools } from "../media/ffmpeg.ts";
import { type HttpServer, startHttp } from "../http/server.ts";
import { handleConnection, type ServerContext } from "./connection.ts";

/** The HTTP API and web page of {@linkcode ServeOptions.http}. */
export interface HttpServeOptions {
  /** Port; 0 picks a free one. Default 8080. */
  port?: number;
  /** Address to listen on. Default: the MMP `hostname`. */
  hostname?: string;
  /**
   * Host names the server answers to (DNS-rebinding guard); `*` accepts any. Default: the bind
   * address, localhost, and any IP address (127.0.0.1, ::1, the machine's own addresses).
   */
  allowedHosts?: string[];
}

/** Options of {@linkcode serve}; every field has a default. */
export interface ServeOptions {
  /** Address to listen on. Default `0.0.0.0`. */
  hostname?: string;
  /** Port; 0 picks a free one. Default 9000. */
  port?: number;
  /** The HTTP API and web page; off when absent or `false` (`mmp serve` turns it on). */
  http?: HttpServeOptions | false;
  /** Seconds an HTTP result waits for its download before it is deleted. Default 600. */
  resultTtlSeconds?: number;
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
  /** The address MMP listens on, with the real port when 0 was asked for. */
  readonly addr: Deno.NetAddr;
  /** The address of the HTTP API and page, when it is on. */
  readonly httpAddr: Deno.NetAddr | undefined;
  readonly core: JobCore;
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
 * Starts an MMP server, and the HTTP API beside it when `http` is given.
 *
 * @example
 * ```ts
 * await using server = await serve({ port: 0, http: { port: 0 } });
 * console.log(`listening on ${server.addr.port}, web on ${server.httpAddr?.port}`);
 * ```
 */
export async function serve(options: ServeOptions = {}): Promise<MmpServer> {
  const tools = await findTools(options.ffmpeg);
  const storage = await Storage.open({
    dir: options.storageDir ?? defaultStorageDir(),
    maxBytes: options.maxStorage ?? 4e12,
  });
  const queue = new JobQueue(options.jobs ?? defaultJobs());
  const core = new JobCore({
    storage,
    queue,
    tools,
    slots: new LocalIpSlots(),
    limits: { ...DEFAULT_LIMITS, ...options.limits },
  });
  const controller = new AbortController();
  const log = options.log ?? ((line: string) => console.error(`mmp: ${line}`));
  const sessions = new Set<Promise<void>>();
  const hostname = options.hostname ?? "0.0.0.0";
  const ctx: ServerContext = {
    core,
    idleTimeoutMs: (options.idleTimeoutSeconds ?? 60) * 1000,
    minUploadBytesPerSecond: options.minUploadBytesPerSecond ?? 1024,
    connections: () => sessions.size,
    maxConnections: options.maxConnections ?? 1024,
    signal: controller.signal,
    log,
  };
  const listener = Deno.listen({ hostname, port: options.port ?? 9000 });
  let http: HttpServer | undefined;
  if (options.http) {
    try {
      http = await startHttp({
        core,
        hostname: options.http.hostname ?? hostname,
        port: options.http.port ?? 8080,
        ...(options.http.allowedHosts ? { allowedHosts: options.http.allowedHosts } : {}),
        resultTtlSeconds: options.resultTtlSeconds ?? 600,
        idleTimeoutMs: ctx.idleTimeoutMs,
        minUploadBytesPerSecond: ctx.minUploadBytesPerSecond,
        signal: controller.signal,
        log,
      });
    } catch (err) {
      listener.close();
      throw err;
    }
  }
  const accepting = acceptLoop(listener, ctx, sessions);

  let stopping: Promise<void> | undefined;
  const shutdown = () =>
    stopping ??= (async () => {
      listener.close();
      controller.abort(
        new MmpError("SHUTTING_DOWN", "The server is shutting down and stopped your job"),
      );
      await Promise.all([accepting, queue.close(controller.signal.reason)]);
      await Promise.all([...sessions, http?.close()]);
      await storage.removeLeftovers();
    })();

  return {
    addr: listener.addr,
    httpAddr: http?.addr,
    core,
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
