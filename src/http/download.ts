import type { ClientJob } from "../jobs/client_job.ts";
import { mimeFor } from "../media/formats.ts";
import { HttpError } from "./errors.ts";

/**
 * `attachment` with the name twice (RFC 6266): an ASCII fallback for old clients and the exact
 * UTF-8 name, percent-encoded (RFC 8187).
 */
export function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\%]/g, "_");
  const encoded = encodeURIComponent(name).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

/** A single byte range `[start, end]`, inclusive as in `Content-Range`. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * The range a `Range` header asks for: undefined for the whole file (no header, or one this
 * server serves whole: several ranges, other units), or 416 when none of it exists.
 */
export function parseRange(header: string | null, size: number): ByteRange | undefined {
  if (header === null) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === "" && match[2] === "")) return undefined;
  let start: number;
  let end: number;
  if (match[1] === "") {
    const suffix = Number(match[2]);
    start = Math.max(0, size - suffix);
    end = size - 1;
    if (suffix === 0) start = size; // unsatisfiable
  } else {
    start = Number(match[1]);
    end = match[2] === "" ? size - 1 : Math.min(Number(match[2]), size - 1);
    if (match[2] !== "" && Number(match[2]) < start) return undefined; // invalid: ignored
  }
  if (start >= size) {
    throw new HttpError(416, "BAD_REQUEST", "The requested range is outside the result", {
      solution: `Ask for bytes 0 to ${size - 1}`,
      headers: { "Content-Range": `bytes */${size}` },
    });
  }
  return { start, end };
}

/** Options of {@linkcode resultResponse}. */
export interface ResultResponseOptions {
  /** HEAD: headers only. */
  head: boolean;
  /** Called when bytes `[start, end)` have all been handed to the client. */
  onDelivered: (start: number, end: number) => void;
  /** Aborting (shutdown) cuts the download off. */
  signal: AbortSignal;
}

const CHUNK = 1 << 20;

/** `GET /api/jobs/ID/result`: the output file, whole or one byte range. */
export async function resultResponse(
  request: Request,
  job: ClientJob,
  options: ResultResponseOptions,
): Promise<Response> {
  const output = job.output!;
  const result = job.describeResult()!;
  const etag = `"${output.sha256}"`;
  const ifRange = request.headers.get("if-range");
  const range = ifRange === null || ifRange === etag
    ? parseRange(request.headers.get("range"), output.size)
    : undefined;
  const start = range?.start ?? 0;
  const end = (range?.end ?? output.size - 1) + 1;
  const headers: Record<string, string> = {
    "Content-Type": mimeFor(output.format),
    "Content-Length": String(end - start),
    "Content-Disposition": contentDisposition(result.name),
    "X-Content-SHA256": output.sha256,
    "Accept-Ranges": "bytes",
    "ETag": etag,
    "Cache-Control": "no-store",
  };
  if (range) headers["Content-Range"] = `bytes ${start}-${end - 1}/${output.size}`;
  const status = range ? 206 : 200;
  if (options.head) return new Response(null, { status, headers });

  const file = await Deno.open(output.path, { read: true });
  let open = true;
  const close = () => {
    if (open) file.close();
    open = false;
  };
  let position = start;
  try {
    await file.seek(start, Deno.SeekMode.Start);
  } catch (err) {
    close();
    throw err;
  }
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        options.signal.throwIfAborted();
        const buf = new Uint8Array(Math.min(CHUNK, end - position));
        const n = await file.read(buf);
        if (n === null) throw new Error("The result shrank while it was being sent");
        position += n;
        controller.enqueue(buf.subarray(0, n));
        if (position >= end) {
          close();
          controller.close();
          options.onDelivered(start, end);
        }
      } catch (err) {
        close();
        controller.error(err);
      }
    },
    cancel: close,
  });
  return new Response(body, { status, headers });
}
