import type { JobCore } from "../jobs/core.ts";
import { normalizeIp } from "../jobs/ip_slots.ts";
import { type ApiContext, handleApi } from "./api.ts";
import { errorResponse, methodNotAllowed, notFound } from "./errors.ts";
import { JobTable } from "./job_table.ts";
import { isPagePath, loadPage, type PageAssets, pageResponse } from "./page.ts";
import { HostGuard, SECURITY_HEADERS } from "./security.ts";

/** How long answers get to go out between the last handler's end and the server's close. */
const CLOSE_GRACE_MS = 100;

/** Options of {@linkcode startHttp}. */
export interface HttpServerOptions {
  /** The job lifecycle, shared with MMP. */
  core: JobCore;
  hostname: string;
  /** 0 picks a free port. */
  port: number;
  /** Host names the server answers to; `*` accepts any. Default: see {@linkcode HostGuard}. */
  allowedHosts?: readonly string[];
  /** Seconds a result waits for its download. */
  resultTtlSeconds: number;
  idleTimeoutMs: number;
  minUploadBytesPerSecond: number;
  /** The server's shutdown: uploads, event streams and downloads end when it aborts. */
  signal: AbortSignal;
  log: (line: string) => void;
}

/** The running HTTP API and page. */
export interface HttpServer {
  readonly addr: Deno.NetAddr;
  /** Deletes every job still held and waits for the HTTP server to stop. */
  close(): Promise<void>;
}

/**
 * Starts the HTTP API (`/api/…`, see docs/http.md) and the web page (`/`, `/app.js`,
 * `/style.css`) on one port.
 *
 * @example
 * ```ts
 * const http = await startHttp({ core, hostname: "127.0.0.1", port: 0, ...limits, signal, log });
 * console.log(`mmp web on http://127.0.0.1:${http.addr.port}`);
 * ```
 */
export async function startHttp(options: HttpServerOptions): Promise<HttpServer> {
  const page = await loadPage();
  const table = new JobTable({ ttlMs: options.resultTtlSeconds * 1000, log: options.log });
  const ctx: ApiContext = {
    core: options.core,
    table,
    guard: new HostGuard(options.allowedHosts, options.hostname),
    idleTimeoutMs: options.idleTimeoutMs,
    minUploadBytesPerSecond: options.minUploadBytesPerSecond,
    signal: options.signal,
    log: options.log,
  };
  const stop = new AbortController();
  const handlers = new Set<Promise<Response>>();
  let served = 0;
  const server = Deno.serve({
    hostname: options.hostname,
    port: options.port,
    signal: stop.signal,
    onListen: () => {},
    onError: (err) => secure(errorResponse(err, options.log)),
  }, (request, info) => {
    const handler = handle(request, normalizeIp(info.remoteAddr.hostname), ctx, page);
    served++;
    handlers.add(handler);
    handler.finally(() => handlers.delete(handler));
    return handler;
  });
  return {
    addr: server.addr,
    async close() {
      await table.close(options.signal.reason);
      // Uploads, event streams and downloads end at once on the aborted signal. Their last
      // answers (503, the error event) must be out before the close: aborting Deno.serve drops
      // answers still being written, and its graceful shutdown() waits for as long as a client
      // keeps sending a body that was answered early. So: wait for the handlers, then a moment.
      await Promise.allSettled(handlers);
      if (served > 0) await new Promise((resolve) => setTimeout(resolve, CLOSE_GRACE_MS));
      stop.abort();
      await server.finished;
    },
  };
}

function secure(response: Response): Response {
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) response.headers.set(name, value);
  return response;
}

async function handle(
  request: Request,
  ip: string,
  ctx: ApiContext,
  page: PageAssets,
): Promise<Response> {
  try {
    ctx.guard.checkHost(request);
    // Anything that changes state must come from this server's own page (or a non-browser).
    if (request.method !== "GET" && request.method !== "HEAD") ctx.guard.checkOrigin(request);
    return secure(await route(request, ip, ctx, page));
  } catch (err) {
    return secure(errorResponse(err, ctx.log));
  }
}

async function route(
  request: Request,
  ip: string,
  ctx: ApiContext,
  page: PageAssets,
): Promise<Response> {
  const path = new URL(request.url).pathname;
  const api = await handleApi(request, path, ip, ctx);
  if (api) return api;
  if (!isPagePath(path)) throw notFound();
  if (request.method !== "GET" && request.method !== "HEAD") {
    throw methodNotAllowed(["GET", "HEAD"]);
  }
  const response = pageResponse(page, path, request.method === "HEAD");
  if (!response) throw notFound("This part of the page is not installed on this server");
  return response;
}
