/** Size of the fixed MMP frame header in bytes. */
export const HEADER_SIZE = 8;
/** Largest JSON section a header can announce (u16). */
export const MAX_JSON_SIZE = 0xffff;
/** Largest media-type section a header can announce (u8). */
export const MAX_MEDIA_SIZE = 0xff;
/** Largest payload a header can announce (u40): 1 TiB - 1. */
export const MAX_PAYLOAD_SIZE = 2 ** 40 - 1;

/** The three section sizes carried by an MMP frame header. */
export interface FrameHeader {
  jsonSize: number;
  mediaSize: number;
  payloadSize: number;
}

/** Thrown when a frame cannot be encoded or decoded. */
export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FrameError";
  }
}

function checkSize(name: string, value: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new FrameError(`Cannot encode frame: ${name} ${value} is outside 0..${max}`);
  }
}

/** Writes the 8-byte big-endian header into `target` at `offset`. */
export function encodeHeader(
  header: FrameHeader,
  target = new Uint8Array(HEADER_SIZE),
  offset = 0,
) {
  checkSize("JSON size", header.jsonSize, MAX_JSON_SIZE);
  checkSize("media-type size", header.mediaSize, MAX_MEDIA_SIZE);
  checkSize("payload size", header.payloadSize, MAX_PAYLOAD_SIZE);
  const high = Math.floor(header.payloadSize / 2 ** 32);
  const low = header.payloadSize % 2 ** 32;
  const view = new DataView(target.buffer, target.byteOffset + offset, HEADER_SIZE);
  view.setUint16(0, header.jsonSize);
  view.setUint8(2, header.mediaSize);
  view.setUint8(3, high);
  view.setUint32(4, low);
  return target;
}

/** Reads the 8-byte big-endian header from the start of `bytes`. */
export function decodeHeader(bytes: Uint8Array): FrameHeader {
  if (bytes.length < HEADER_SIZE) {
    throw new FrameError(`Cannot decode frame: header needs 8 bytes, got ${bytes.length}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_SIZE);
  return {
    jsonSize: view.getUint16(0),
    mediaSize: view.getUint8(2),
    payloadSize: view.getUint8(3) * 2 ** 32 + view.getUint32(4),
  };
}

const encoder = new TextEncoder();

/** The header, JSON and media type of a frame as one buffer; the payload follows separately. */
export function encodeFrameHead(
  json: Record<string, unknown>,
  mediaType = "",
  payloadSize = 0,
): Uint8Array {
  const jsonBytes = encoder.encode(JSON.stringify(json));
  const mediaBytes = encoder.encode(mediaType);
  const out = new Uint8Array(HEADER_SIZE + jsonBytes.length + mediaBytes.length);
  encodeHeader({ jsonSize: jsonBytes.length, mediaSize: mediaBytes.length, payloadSize }, out);
  out.set(jsonBytes, HEADER_SIZE);
  out.set(mediaBytes, HEADER_SIZE + jsonBytes.length);
  return out;
}
