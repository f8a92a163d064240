/**
 * The PROXY protocol (HAProxy's, versions 1 and 2): the header a load balancer sends first on each
 * connection, carrying the client's real address. Parsed here, byte by byte, with no dependency.
 *
 * Spec: https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt
 *
 * @module
 */
import type { ByteSource } from "../protocol/frame_reader.ts";

/** Why a PROXY header was refused. */
export class ProxyProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProxyProtocolError";
  }
}

/** An address a header carries. */
export interface ProxyAddress {
  hostname: string;
  port: number;
}

/** A type-length-value extension of a v2 header (ALPN, authority, SSL, CRC32C, …). */
export interface ProxyTlv {
  type: number;
  value: Uint8Array;
}

/** A parsed header. `source` is absent for `LOCAL` (health checks) and `UNKNOWN`/`UNSPEC`. */
export interface ProxyHeader {
  version: 1 | 2;
  command: "PROXY" | "LOCAL";
  /** The client as the balancer saw it. */
  source?: ProxyAddress;
  /** The address the client connected to (the balancer's frontend). */
  destination?: ProxyAddress;
  tlvs: ProxyTlv[];
}

/** v2's fixed 12-byte signature. */
export const V2_SIGNATURE = new Uint8Array([
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
]);
const V1_PREFIX = new TextEncoder().encode("PROXY ");
/** v1's longest line, CRLF included (spec section 2.1). */
const V1_MAX = 107;
/** Longest v2 address block with TLVs that this server accepts (HAProxy sends a few dozen bytes). */
export const V2_MAX_BODY = 4096;

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  const n = Math.min(bytes.length, prefix.length);
  for (let i = 0; i < n; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/**
 * Whether `bytes` begin like a PROXY header (or could, being shorter than a signature). Such
 * bytes never begin a valid MMP frame: its JSON would start with `QUIT` or `P4`.
 */
export function looksLikeProxyHeader(bytes: Uint8Array): boolean {
  return bytes.length > 0 && (startsWith(bytes, V2_SIGNATURE) || startsWith(bytes, V1_PREFIX));
}

/**
 * Parses a header at the start of `bytes`: the header and its length, or `null` when `bytes` are a
 * valid beginning that needs more bytes. Throws {@linkcode ProxyProtocolError} on anything else.
 *
 * @example
 * ```ts
 * const parsed = parseProxyHeader(new TextEncoder().encode("PROXY TCP4 192.0.2.7 10.0.0.1 5000 9000\r\n"));
 * parsed?.header.source; // { hostname: "192.0.2.7", port: 5000 }
 * ```
 */
export function parseProxyHeader(
  bytes: Uint8Array,
): { header: ProxyHeader; length: number } | null {
  if (bytes.length === 0) return null;
  if (startsWith(bytes, V2_SIGNATURE)) {
    return bytes.length < 16 ? null : parseV2(bytes);
  }
  if (startsWith(bytes, V1_PREFIX)) return parseV1(bytes);
  throw new ProxyProtocolError("No PROXY protocol signature");
}

function parseV1(bytes: Uint8Array): { header: ProxyHeader; length: number } | null {
  const end = bytes.subarray(0, V1_MAX).indexOf(0x0a);
  if (end < 0) {
    if (bytes.length >= V1_MAX) throw new ProxyProtocolError("v1 header longer than 107 bytes");
    return null;
  }
  if (bytes[end - 1] !== 0x0d) throw new ProxyProtocolError("v1 header does not end in CRLF");
  const line = new TextDecoder("ascii").decode(bytes.subarray(0, end - 1));
  if (!/^[\x20-\x7e]*$/.test(line)) throw new ProxyProtocolError("v1 header is not plain ASCII");
  const parts = line.split(" ");
  const length = end + 1;
  if (parts[1] === "UNKNOWN") return { header: { version: 1, command: "PROXY", tlvs: [] }, length };
  if (parts.length !== 6 || (parts[1] !== "TCP4" && parts[1] !== "TCP6")) {
    throw new ProxyProtocolError("v1 header is not PROXY TCP4|TCP6 SRC DST SPORT DPORT");
  }
  const [, family, src, dst, sport, dport] = parts as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const check = family === "TCP4" ? isIpv4 : isIpv6;
  if (!check(src) || !check(dst)) {
    throw new ProxyProtocolError(`v1 header has a bad ${family} address`);
  }
  return {
    header: {
      version: 1,
      command: "PROXY",
      source: { hostname: family === "TCP6" ? src.toLowerCase() : src, port: v1Port(sport) },
      destination: { hostname: family === "TCP6" ? dst.toLowerCase() : dst, port: v1Port(dport) },
      tlvs: [],
    },
    length,
  };
}

function v1Port(text: string): number {
  if (!/^(0|[1-9]\d{0,4})$/.test(text) || Number(text) > 65535) {
    throw new ProxyProtocolError("v1 header has a bad port");
  }
  return Number(text);
}

function isIpv4(text: string): boolean {
  const parts = text.split(".");
  return parts.length === 4 && parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) < 256);
}

function isIpv6(text: string): boolean {
  if (!/^[0-9a-fA-F:.]{2,45}$/.test(text)) return false;
  try {
    return new URL(`http://[${text}]/`).hostname.length > 2;
  } catch {
    return false;
  }
}

function parseV2(bytes: Uint8Array): { header: ProxyHeader; length: number } | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const versionCommand = bytes[12]!;
  if (versionCommand >> 4 !== 2) throw new ProxyProtocolError("v2 header has a bad version");
  const commandBits = versionCommand & 0x0f;
  if (commandBits > 1) throw new ProxyProtocolError("v2 header has an unknown command");
  const family = bytes[13]!;
  const bodyLength = view.getUint16(14);
  if (bodyLength > V2_MAX_BODY) throw new ProxyProtocolError("v2 header is too long");
  if (bytes.length < 16 + bodyLength) return null;
  const body = bytes.subarray(16, 16 + bodyLength);
  const length = 16 + bodyLength;
  const command = commandBits === 0 ? "LOCAL" : "PROXY";
  const header: ProxyHeader = { version: 2, command, tlvs: [] };
  let addressLength = 0;
  const transport = family & 0x0f; // 1 stream, 2 datagram
  const addressFamily = family >> 4; // 0 unspec, 1 inet, 2 inet6, 3 unix
  if (family !== 0x00 && transport !== 1 && transport !== 2) {
    throw new ProxyProtocolError("v2 header has an unknown transport");
  }
  if (addressFamily === 1) addressLength = 12;
  else if (addressFamily === 2) addressLength = 36;
  else if (addressFamily === 3) addressLength = 216;
  else if (addressFamily !== 0) throw new ProxyProtocolError("v2 header has an unknown family");
  if (body.length < addressLength) {
    throw new ProxyProtocolError("v2 header is shorter than its addresses");
  }
  if (command === "PROXY" && transport === 1 && (addressFamily === 1 || addressFamily === 2)) {
    const ipLength = addressFamily === 1 ? 4 : 16;
    const format = addressFamily === 1 ? formatIpv4 : formatIpv6;
    const ports = new DataView(body.buffer, body.byteOffset + 2 * ipLength, 4);
    header.source = { hostname: format(body.subarray(0, ipLength)), port: ports.getUint16(0) };
    header.destination = {
      hostname: format(body.subarray(ipLength, 2 * ipLength)),
      port: ports.getUint16(2),
    };
  } else if (command === "PROXY" && family !== 0x00) {
    // UDP or UNIX sockets cannot be MMP clients.
    throw new ProxyProtocolError("v2 header is not for a TCP client");
  }
  header.tlvs = parseTlvs(body.subarray(addressLength));
  return { header, length };
}

function parseTlvs(bytes: Uint8Array): ProxyTlv[] {
  const tlvs: ProxyTlv[] = [];
  let at = 0;
  while (at < bytes.length) {
    if (at + 3 > bytes.length) throw new ProxyProtocolError("v2 header has a truncated TLV");
    const size = (bytes[at + 1]! << 8) | bytes[at + 2]!;
    if (at + 3 + size > bytes.length) throw new ProxyProtocolError("v2 header has a truncated TLV");
    tlvs.push({ type: bytes[at]!, value: bytes.slice(at + 3, at + 3 + size) });
    at += 3 + size;
  }
  return tlvs;
}

function formatIpv4(bytes: Uint8Array): string {
  return Array.from(bytes).join(".");
}

function formatIpv6(bytes: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  // An IPv4-mapped address keeps its dotted form, as Deno writes it: ::ffff:192.0.2.7.
  if (groups.slice(0, 5).every((g) => g === "0") && groups[5] === "ffff") {
    return `::ffff:${formatIpv4(bytes.subarray(12))}`;
  }
  return new URL(`http://[${groups.join(":")}]/`).hostname.slice(1, -1);
}

/** Options of {@linkcode readProxyHeader}. */
export interface ReadProxyHeaderOptions {
  /** The whole header must arrive within this long. Default 3000. */
  timeoutMs?: number;
}

/**
 * Reads a header from `source`. Returns it with the bytes read past it, which belong to the
 * protocol behind it. Throws {@linkcode ProxyProtocolError} on a bad, truncated or late header.
 */
export async function readProxyHeader(
  source: ByteSource,
  options: ReadProxyHeaderOptions = {},
): Promise<{ header: ProxyHeader; rest: Uint8Array }> {
  const timeoutMs = options.timeoutMs ?? 3000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new ProxyProtocolError(`No complete header within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  const buffer = new Uint8Array(16 + V2_MAX_BODY);
  let filled = 0;
  try {
    while (true) {
      const parsed = parseProxyHeader(buffer.subarray(0, filled));
      if (parsed) {
        return { header: parsed.header, rest: buffer.slice(parsed.length, filled) };
      }
      if (filled === buffer.length) throw new ProxyProtocolError("Header too long");
      const pending = source.read(buffer.subarray(filled));
      pending.catch(() => {});
      const n = await Promise.race([pending, late]);
      if (n === null) {
        throw new ProxyProtocolError(
          filled === 0 ? "Closed before any header" : "Closed in the middle of the header",
        );
      }
      filled += n;
    }
  } finally {
    clearTimeout(timer);
  }
}
