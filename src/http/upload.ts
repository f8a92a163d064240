import { extname } from "node:path";
import { MmpError } from "../protocol/errors.ts";
import type { ByteSource } from "../protocol/frame_reader.ts";
import { normalizeMediaType } from "../protocol/media_type.ts";
import { ClientGone, type UploadSink } from "../jobs/client_job.ts";
import { GuardedSource } from "../jobs/guarded_source.ts";

/** Arguments whose numeric-looking query values are numbers (seconds). */
const NUMERIC_KEYS = new Set(["start", "end"]);
/** Query values that stay strings whatever they look like. */
const STRING_KEYS = new Set(["op", "name", "sha256"]);

function badRequest(description: string, solution?: string): MmpError {
  return new MmpError("BAD_REQUEST", description, solution ? { solution } : {});
}

/**
 * A job request's JSON from a query string, for the same validation as MMP's: `start`/`end` that
 * look like numbers become numbers, `true`/`false` become booleans, the rest stay strings.
 */
export function queryArgs(params: URLSearchParams): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  for (const [key, value] of params) {
    if (Object.hasOwn(args, key)) throw badRequest(`The argument ${key.slice(0, 40)} is repeated`);
    if (STRING_KEYS.has(key)) args[key] = value;
    else if (NUMERIC_KEYS.has(key) && /^\d+(\.\d+)?$/.test(value)) args[key] = Number(value);
    else if (value === "true" || value === "false") args[key] = value === "true";
    else args[key] = value;
  }
  return args;
}

function accepted(mediaType: string): boolean {
  try {
    normalizeMediaType(mediaType);
    return true;
  } catch {
    return false;
  }
}

/**
 * The upload's media type: the extension of its `name` when the server accepts it, else its
 * `Content-Type`; the job core checks the result against the allow-list.
 */
export function uploadMediaType(name: string | undefined, contentType: string | null): string {
  const extension = name === undefined ? "" : extname(name).slice(1);
  if (extension && accepted(extension)) return extension;
  const mime = contentType?.split(";")[0]?.trim() ?? "";
  if (mime && mime !== "application/octet-stream" && accepted(mime)) return mime;
  return extension || mime;
}

/** The `Content-Length` of an upload: required (411), a plain decimal number (400). */
export function contentLength(request: Request): number | undefined {
  const value = request.headers.get("content-length");
  if (value === null) return undefined;
  if (!/^\d{1,16}$/.test(value.trim())) throw badRequest("The Content-Length header is invalid");
  return Number(value);
}

/** A request body as a `read(p)` source, for the same guard as MMP's sockets. */
class BodySource implements ByteSource {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #pending: Uint8Array = new Uint8Array();

  constructor(reader: ReadableStreamDefaultReader<Uint8Array>) {
    this.#reader = reader;
  }

  async read(p: Uint8Array): Promise<number | null> {
    if (this.#pending.length === 0) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await this.#reader.read();
      } catch {
        throw new ClientGone(); // the client closed the connection mid-body
      }
      if (chunk.done) return null;
      this.#pending = chunk.value;
    }
    const n = Math.min(p.length, this.#pending.length);
    p.set(this.#pending.subarray(0, n));
    this.#pending = this.#pending.subarray(n);
    return n;
  }
}

/** Options of {@linkcode copyBody}. */
export interface CopyBodyOptions {
  /** A stall longer than this is `TIMEOUT`. */
  idleTimeoutMs: number;
  /** Fewer bytes per second, averaged over each idle-timeout window, are `TIMEOUT`. */
  minBytesPerSecond: number;
  /** Aborting (shutdown) ends the copy with the signal's reason. */
  signal: AbortSignal;
}

/**
 * Passes exactly `size` bytes of `body` to `sink` in chunks of up to 512 KiB, under the same
 * idle-timeout and minimum-rate guard as MMP uploads.
 */
export async function copyBody(
  body: ReadableStream<Uint8Array> | null,
  size: number,
  sink: UploadSink,
  options: CopyBodyOptions,
): Promise<void> {
  if (body === null) throw badRequest("The request has no body");
  const reader = body.getReader();
  using source = new GuardedSource(new BodySource(reader), {
    idleTimeoutMs: options.idleTimeoutMs,
    minBytesPerSecond: options.minBytesPerSecond,
    signal: options.signal,
  });
  const buf = new Uint8Array(1 << 20);
  let filled = 0;
  let left = size;
  try {
    while (left > 0) {
      const room = buf.subarray(filled, filled + Math.min(left, buf.length - filled));
      const n = await source.read(room);
      if (n === null) throw new ClientGone();
      filled += n;
      left -= n;
      if (filled >= buf.length / 2 || left === 0) {
        await sink(buf.subarray(0, filled));
        filled = 0;
      }
    }
    // Read to the end of the body, which frees it (Content-Length makes this the next read).
    if ((await source.read(buf.subarray(0, 1))) !== null) {
      throw badRequest("The upload is longer than its Content-Length");
    }
  } catch (err) {
    reader.cancel().catch(() => {});
    throw err;
  }
  reader.releaseLock();
}
