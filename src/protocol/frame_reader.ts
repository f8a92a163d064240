import { decodeHeader, FrameError, type FrameHeader, HEADER_SIZE } from "./frame.ts";

/** Anything with a `Deno.Conn`-style `read`: a socket, a file, a test stub. */
export interface ByteSource {
  read(p: Uint8Array): Promise<number | null>;
}

/** Thrown when the peer closes the connection in the middle of a frame. */
export class TruncatedFrameError extends FrameError {
  constructor(what: string) {
    super(`Cannot read frame: connection closed in the middle of the ${what}`);
    this.name = "TruncatedFrameError";
  }
}

/** Header, JSON and media type of a frame; the payload is still on the wire. */
export interface FrameHead {
  header: FrameHeader;
  json: Record<string, unknown>;
  mediaType: string;
}

const decoder = new TextDecoder("utf-8", { fatal: true });
/** Media types are checked against an allow-list later; bad bytes become U+FFFD and fail there. */
const lenientDecoder = new TextDecoder("utf-8");

/** Payload bytes are read straight into a buffer of this size, allocated only for a payload. */
const BULK_SIZE = 1 << 20;
/**
 * The head buffer starts small and grows (to `bufferSize`) only for a large JSON: a thousand
 * connections waiting mid-header then hold 4 MiB, not 64.
 */
const INITIAL_SIZE = 4096;
/** Gathered payload bytes go to the sink once this many are in the buffer (or the payload ends). */
const FLUSH_SIZE = BULK_SIZE / 2;

/** Options of {@linkcode FrameReader}. */
export interface FrameReaderOptions {
  /** Largest buffer for headers, JSON and media types. Default 64 KiB + 8. */
  bufferSize?: number;
}

/**
 * Reads MMP frames from a byte stream. Small sections are buffered; payloads are handed to a sink
 * chunk by chunk, so a frame of any size passes through a fixed amount of memory.
 *
 * @example
 * ```ts
 * const reader = new FrameReader(conn);
 * const head = await reader.readFrameHead();
 * if (head) await reader.copyPayload(head.header.payloadSize, (chunk) => file.write(chunk));
 * ```
 */
export class FrameReader {
  #source: ByteSource;
  #buf: Uint8Array;
  #max: number;
  #bulk: Uint8Array | undefined;
  #start = 0;
  #end = 0;

  constructor(source: ByteSource, options: FrameReaderOptions = {}) {
    this.#source = source;
    this.#max = options.bufferSize ?? 65536 + 8;
    this.#buf = new Uint8Array(Math.min(INITIAL_SIZE, this.#max));
  }

  /** Bytes received but not consumed yet. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** Reads more bytes into the buffer; false at end of stream. */
  async #fill(): Promise<boolean> {
    if (this.#start === this.#end) this.#start = this.#end = 0;
    if (this.#end === this.#buf.length) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    const n = await this.#source.read(this.#buf.subarray(this.#end));
    if (n === null) return false;
    this.#end += n;
    return true;
  }

  /** Exactly `size` bytes (at most the buffer size), copied out of the buffer. */
  async readExact(size: number, what = "frame"): Promise<Uint8Array> {
    if (size > this.#max) throw new FrameError(`Cannot read frame: ${what} is too large`);
    if (size > this.#buf.length) this.#grow(size);
    while (this.buffered < size) {
      if (!(await this.#fill())) throw new TruncatedFrameError(what);
    }
    const out = this.#buf.slice(this.#start, this.#start + size);
    this.#start += size;
    return out;
  }

  /** A larger buffer (up to the maximum) holding the unconsumed bytes at its start. */
  #grow(size: number): void {
    const next = new Uint8Array(Math.min(this.#max, Math.max(size, this.#buf.length * 2)));
    next.set(this.#buf.subarray(this.#start, this.#end));
    this.#end -= this.#start;
    this.#start = 0;
    this.#buf = next;
  }

  /** The next header, or null when the stream ends cleanly between frames. */
  async readHeader(): Promise<FrameHeader | null> {
    while (this.buffered < HEADER_SIZE) {
      if (!(await this.#fill())) {
        if (this.buffered === 0) return null;
        throw new TruncatedFrameError("header");
      }
    }
    const header = decodeHeader(this.#buf.subarray(this.#start, this.#start + HEADER_SIZE));
    this.#start += HEADER_SIZE;
    return header;
  }

  /** The JSON section: a UTF-8 JSON object. */
  async readJson(size: number): Promise<Record<string, unknown>> {
    if (size === 0) throw new FrameError("Cannot read frame: the JSON section is empty");
    const bytes = await this.readExact(size, "JSON");
    let value: unknown;
    try {
      value = JSON.parse(decoder.decode(bytes));
    } catch {
      throw new FrameError("Cannot read frame: the JSON section is not valid UTF-8 JSON");
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new FrameError("Cannot read frame: the JSON section is not an object");
    }
    return value as Record<string, unknown>;
  }

  /** The media-type section; invalid UTF-8 decodes to U+FFFD, which no allow-list contains. */
  async readMediaType(size: number): Promise<string> {
    return lenientDecoder.decode(await this.readExact(size, "media type"));
  }

  /** Header, JSON and media type of the next frame, or null at a clean end of stream. */
  async readFrameHead(): Promise<FrameHead | null> {
    const header = await this.readHeader();
    if (header === null) return null;
    const json = await this.readJson(header.jsonSize);
    const mediaType = await this.readMediaType(header.mediaSize);
    return { header, json, mediaType };
  }

  /**
   * Passes the next `size` payload bytes to `sink` in chunks. A chunk is only valid until the sink's
   * promise settles: the buffer is reused for the next read.
   */
  async copyPayload(
    size: number,
    sink: (chunk: Uint8Array) => Promise<void> | void,
  ): Promise<void> {
    let left = size;
    const buffered = Math.min(left, this.buffered);
    if (buffered > 0) {
      await sink(this.#buf.subarray(this.#start, this.#start + buffered));
      this.#start += buffered;
      left -= buffered;
    }
    if (left === 0) return;
    // The rest bypasses the small buffer and reads straight into a large one. Reads are gathered
    // until half of it is full: many small packets become one sink call (one file write).
    const bulk = this.#bulk ??= new Uint8Array(BULK_SIZE);
    try {
      let filled = 0;
      while (left > 0) {
        const room = bulk.subarray(filled, filled + Math.min(left, bulk.length - filled));
        // A payload cut short still hands over what arrived: a resumable upload keeps it.
        const n = await this.#source.read(room).catch(async (err) => {
          if (filled > 0) await sink(bulk.subarray(0, filled));
          throw err;
        });
        if (n === null) {
          if (filled > 0) await sink(bulk.subarray(0, filled));
          throw new TruncatedFrameError("payload");
        }
        filled += n;
        left -= n;
        if (filled >= FLUSH_SIZE || left === 0) {
          await sink(bulk.subarray(0, filled));
          filled = 0;
        }
      }
    } finally {
      this.#bulk = undefined; // idle connections hold only the small buffer
    }
  }
}
