import { encodeFrameHead } from "./frame.ts";

/** Anything with a `Deno.Conn`-style `write` that may write only part of a buffer. */
export interface ByteSink {
  write(p: Uint8Array): Promise<number>;
}

/** Writes all of `bytes`, looping over partial writes. */
export async function writeAll(sink: ByteSink, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await sink.write(bytes.subarray(offset));
}

/** Writes a frame without payload: header, JSON and media type in one write. */
export async function writeFrame(
  sink: ByteSink,
  json: Record<string, unknown>,
  mediaType = "",
): Promise<void> {
  await writeAll(sink, encodeFrameHead(json, mediaType, 0));
}

/** Options of {@linkcode writeFileFrame}. */
export interface WriteFileFrameOptions {
  /** Called after each chunk with the file position reached (`offset` + payload bytes sent). */
  onProgress?: (sent: number) => void;
  /** Sends the file from this byte on: the payload is the rest of it. Default 0. */
  offset?: number;
  /** Stops sending between chunks. */
  signal?: AbortSignal;
}

/**
 * Writes a frame whose payload is the file at `path`, streamed in 1 MiB chunks. The payload size is
 * taken from the file when the frame starts; a file that shrinks meanwhile is an error.
 */
export async function writeFileFrame(
  sink: ByteSink,
  json: Record<string, unknown>,
  mediaType: string,
  path: string,
  options: WriteFileFrameOptions = {},
): Promise<void> {
  using file = await Deno.open(path, { read: true });
  const { size } = await file.stat();
  const offset = options.offset ?? 0;
  if (!Number.isSafeInteger(offset) || offset < 0 || offset > size) {
    throw new RangeError(`Cannot send file from ${offset}: it has ${size} bytes`);
  }
  await writeAll(sink, encodeFrameHead(json, mediaType, size - offset));
  if (offset > 0) await file.seek(offset, Deno.SeekMode.Start);
  const buf = new Uint8Array(1 << 20);
  let sent = offset;
  while (sent < size) {
    options.signal?.throwIfAborted();
    const n = await file.read(buf.subarray(0, Math.min(buf.length, size - sent)));
    if (n === null) throw new Error(`Cannot send file: it shrank while being sent`);
    await writeAll(sink, buf.subarray(0, n));
    sent += n;
    options.onProgress?.(sent);
  }
}
