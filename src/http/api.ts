import { ClientGone } from "../jobs/client_job.ts";
import { type JobCore, jobLogLine } from "../jobs/core.ts";
import { resultResponse } from "./download.ts";
import {
  describeError,
  errorResponse,
  HttpError,
  jsonResponse,
  methodNotAllowed,
  notFound,
} from "./errors.ts";
import { eventStream, jobError, jobJson } from "./events.ts";
import type { JobTable } from "./job_table.ts";
import type { HostGuard } from "./security.ts";
import { contentLength, copyBody, queryArgs, uploadMediaType } from "./upload.ts";

/** What the API's handlers share. */
export interface ApiContext {
  core: JobCore;
  table: JobTable;
  guard: HostGuard;
  idleTimeoutMs: number;
  minUploadBytesPerSecond: number;
  /** Aborted when the server stops. */
  signal: AbortSignal;
  log: (line: string) => void;
}

/** `/api/jobs/ID` and its sub-resources. */
const JOB_PATH = /^\/api\/jobs\/([0-9a-f]{16,64})(\/events|\/result)?$/;

/** Answers a request under `/api/`, or returns undefined when the path is not the API's. */
export async function handleApi(
  request: Request,
  path: string,
  ip: string,
  ctx: ApiContext,
): Promise<Response | undefined> {
  const method = request.method;
  if (path === "/api/info") {
    if (method !== "GET" && method !== "HEAD") throw methodNotAllowed(["GET", "HEAD"]);
    return jsonResponse(await ctx.core.info());
  }
  if (path === "/api/jobs") {
    if (method !== "POST") throw methodNotAllowed(["POST"]);
    return await postJob(request, ip, ctx);
  }
  const match = JOB_PATH.exec(path);
  if (!match) return path.startsWith("/api/") ? errorResponse(notFound(), ctx.log) : undefined;
  const [, id, part] = match;
  const entry = ctx.table.find(id!, ip);
  if (!entry) {
    throw notFound("No such job: results are deleted once downloaded or after a while");
  }
  const job = entry.job;
  if (part === undefined) {
    if (method === "GET" || method === "HEAD") return jsonResponse(jobJson(job));
    if (method !== "DELETE") throw methodNotAllowed(["GET", "HEAD", "DELETE"]);
    await ctx.table.cancel(entry);
    return jsonResponse({ job: job.id, state: "cancelled" });
  }
  if (method !== "GET" && method !== "HEAD") throw methodNotAllowed(["GET", "HEAD"]);
  if (part === "/events") return eventStream(job, ctx.signal);
  const state = job.state;
  if (state === "failed" || state === "cancelled") {
    const body = jobError(job);
    return jsonResponse(body, describeError(job.error).status);
  }
  if (state !== "done") {
    throw new HttpError(409, "BAD_REQUEST", "The job has not finished yet", {
      solution: "Wait for its result event, or poll GET /api/jobs/ID until its state is done",
    });
  }
  return await resultResponse(request, job, {
    head: method === "HEAD",
    signal: ctx.signal,
    onDelivered: (start, end) => ctx.table.delivered(entry, start, end),
  });
}

/**
 * `POST /api/jobs?op=…`: everything that can be decided from the request line and headers is
 * answered before the body is read; `202` only once the whole body is on disk and verified.
 */
async function postJob(request: Request, ip: string, ctx: ApiContext): Promise<Response> {
  const startedAt = performance.now();
  const params = new URL(request.url).searchParams;
  let op: string | undefined;
  let size = 0;
  try {
    const length = contentLength(request);
    if (length === undefined) {
      throw new HttpError(411, "BAD_REQUEST", "The upload needs a Content-Length header", {
        solution: "Send the file with its size in Content-Length (not chunked)",
      });
    }
    size = length;
    const args = queryArgs(params);
    op = typeof args.op === "string" ? args.op.slice(0, 40) : undefined;
    const sha256 = request.headers.get("x-content-sha256");
    if (sha256 !== null) {
      if (args.sha256 !== undefined && args.sha256 !== sha256) {
        throw new HttpError(400, "BAD_REQUEST", "X-Content-SHA256 and sha256 differ");
      }
      args.sha256 = sha256;
    }
    const name = typeof args.name === "string" ? args.name : undefined;
    const job = await ctx.core.admit({
      ip,
      args,
      mediaType: uploadMediaType(name, request.headers.get("content-type")),
      size,
    });
    try {
      await job.receive((sink) =>
        copyBody(request.body, job.size, sink, {
          idleTimeoutMs: ctx.idleTimeoutMs,
          minBytesPerSecond: ctx.minUploadBytesPerSecond,
          signal: ctx.signal,
        })
      );
    } catch (err) {
      await job.dispose(err);
      throw err;
    }
    ctx.table.add(job);
    const { state, queue_position } = job.status();
    return jsonResponse({ job: job.id, state, queue_position }, 202, {
      Location: `/api/jobs/${job.id}`,
    });
  } catch (err) {
    const gone = err instanceof ClientGone;
    const outcome = gone ? "client disconnected" : describeError(err).body.code;
    ctx.log(jobLogLine({ ip, op, inBytes: size, outBytes: 0, startedAt, outcome, via: "http" }));
    throw err;
  }
}
