import assert from "node:assert/strict";
import {
  looksLikeProxyHeader,
  parseProxyHeader,
  ProxyProtocolError,
  readProxyHeader,
  V2_SIGNATURE,
} from "./proxy_protocol.ts";

const text = (s: string) => new TextEncoder().encode(s);

/** A v2 header: `command` 0 LOCAL / 1 PROXY, `family` byte, then the address block and TLVs. */
function v2(command: number, family: number, body: number[]): Uint8Array {
  return new Uint8Array([
    ...V2_SIGNATURE,
    0x20 | command,
    family,
    body.length >> 8,
    body.length & 0xff,
    ...body,
  ]);
}

const IPV4_BODY = [192, 0, 2, 7, 10, 0, 0, 1, 0x13, 0x88, 0x23, 0x28]; // :5000 -> :9000
const IPV6_BODY = [
  ...[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07],
  ...[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01],
  0x13,
  0x88,
  0x23,
  0x28,
];

/** A source that hands out `chunks` one read at a time, then EOF (or hangs when `hang`). */
function chunked(chunks: Uint8Array[], hang = false) {
  return {
    read(p: Uint8Array): Promise<number | null> {
      const chunk = chunks.shift();
      if (!chunk) return hang ? new Promise(() => {}) : Promise.resolve(null);
      p.set(chunk);
      return Promise.resolve(chunk.length);
    },
  };
}

Deno.test("PROXY v1 headers give the client's TCP4 and TCP6 addresses", async (t) => {
  await t.step("TCP4", () => {
    const bytes = text("PROXY TCP4 192.0.2.7 10.0.0.1 5000 9000\r\nMMP…");
    const parsed = parseProxyHeader(bytes)!;
    assert.equal(parsed.length, 41);
    assert.deepEqual(parsed.header.source, { hostname: "192.0.2.7", port: 5000 });
    assert.deepEqual(parsed.header.destination, { hostname: "10.0.0.1", port: 9000 });
    assert.equal(parsed.header.command, "PROXY");
  });
  await t.step("TCP6", () => {
    const parsed = parseProxyHeader(text("PROXY TCP6 2001:DB8::7 2001:db8::1 65535 9000\r\n"))!;
    assert.deepEqual(parsed.header.source, { hostname: "2001:db8::7", port: 65535 });
  });
  await t.step("UNKNOWN: no address, the socket's own is used", () => {
    const parsed = parseProxyHeader(text("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"))!;
    assert.equal(parsed.header.source, undefined);
  });
  await t.step("incomplete lines wait for more bytes", () => {
    assert.equal(parseProxyHeader(text("PROX")), null);
    assert.equal(parseProxyHeader(text("PROXY TCP4 192.0.2.7 10.0.0.1 5000 90")), null);
  });
});

Deno.test("PROXY v2 headers give IPv4 and IPv6 addresses, keep TLVs, and LOCAL has none", async (t) => {
  await t.step("IPv4 with TLVs", () => {
    const tlvs = [0x01, 0x00, 0x02, 0x68, 0x32, 0x04, 0x00, 0x00]; // ALPN "h2", an empty NOOP
    const bytes = v2(1, 0x11, [...IPV4_BODY, ...tlvs]);
    const parsed = parseProxyHeader(new Uint8Array([...bytes, 0, 1, 2]))!;
    assert.equal(parsed.length, bytes.length);
    assert.deepEqual(parsed.header.source, { hostname: "192.0.2.7", port: 5000 });
    assert.deepEqual(parsed.header.destination, { hostname: "10.0.0.1", port: 9000 });
    assert.deepEqual(parsed.header.tlvs, [
      { type: 1, value: text("h2") },
      { type: 4, value: new Uint8Array() },
    ]);
  });
  await t.step("IPv6", () => {
    const parsed = parseProxyHeader(v2(1, 0x21, IPV6_BODY))!;
    assert.deepEqual(parsed.header.source, { hostname: "2001:db8::7", port: 5000 });
  });
  await t.step("IPv4-mapped IPv6 keeps the dotted form", () => {
    const mapped = [...Array(10).fill(0), 0xff, 0xff, 192, 0, 2, 9];
    const parsed = parseProxyHeader(v2(1, 0x21, [...mapped, ...mapped, 0, 1, 0, 2]))!;
    assert.equal(parsed.header.source?.hostname, "::ffff:192.0.2.9");
  });
  await t.step("LOCAL (health checks), with or without addresses", () => {
    assert.equal(parseProxyHeader(v2(0, 0x00, []))!.header.command, "LOCAL");
    const local = parseProxyHeader(v2(0, 0x11, IPV4_BODY))!.header;
    assert.equal(local.command, "LOCAL");
    assert.equal(local.source, undefined);
  });
  await t.step("incomplete headers wait for more bytes", () => {
    const bytes = v2(1, 0x11, IPV4_BODY);
    for (const n of [1, 11, 12, 15, 16, bytes.length - 1]) {
      assert.equal(parseProxyHeader(bytes.subarray(0, n)), null, `${n} bytes`);
    }
  });
});

Deno.test("malformed PROXY headers are refused", () => {
  const bad: [string, Uint8Array][] = [
    ["no signature", text("GET / HTTP/1.1\r\n")],
    ["MMP frame", new Uint8Array([0, 14, 3, 0, 0, 0, 0, 9])],
    ["v1 without CRLF", text(`PROXY TCP4 ${"1".repeat(120)}`)],
    ["v1 LF only", text("PROXY TCP4 192.0.2.7 10.0.0.1 5000 9000\n")],
    ["v1 bad family", text("PROXY UDP4 192.0.2.7 10.0.0.1 5000 9000\r\n")],
    ["v1 bad address", text("PROXY TCP4 192.0.2.777 10.0.0.1 5000 9000\r\n")],
    ["v1 IPv6 in TCP4", text("PROXY TCP4 ::1 ::1 5000 9000\r\n")],
    ["v1 bad port", text("PROXY TCP4 192.0.2.7 10.0.0.1 65536 9000\r\n")],
    ["v1 leading zero", text("PROXY TCP4 192.0.2.7 10.0.0.1 05000 9000\r\n")],
    ["v1 missing field", text("PROXY TCP4 192.0.2.7 10.0.0.1 5000\r\n")],
    ["v1 double space", text("PROXY TCP4  192.0.2.7 10.0.0.1 5000 9000\r\n")],
    ["v2 version 1", new Uint8Array([...V2_SIGNATURE, 0x11, 0x11, 0, 0])],
    ["v2 command 2", v2(2, 0x11, IPV4_BODY)],
    ["v2 family 4", v2(1, 0x41, IPV4_BODY)],
    ["v2 short address", v2(1, 0x11, IPV4_BODY.slice(0, 8))],
    ["v2 UDP", v2(1, 0x12, IPV4_BODY)],
    ["v2 UNIX", v2(1, 0x31, Array(216).fill(0))],
    ["v2 truncated TLV", v2(1, 0x11, [...IPV4_BODY, 0x01, 0x00, 0x05, 0x68])],
    ["v2 half TLV head", v2(1, 0x11, [...IPV4_BODY, 0x01, 0x00])],
    ["v2 too long", new Uint8Array([...V2_SIGNATURE, 0x21, 0x11, 0xff, 0xff])],
  ];
  for (const [name, bytes] of bad) {
    assert.throws(() => parseProxyHeader(bytes), ProxyProtocolError, name);
  }
});

Deno.test("readProxyHeader copes with split reads and hands on the bytes after the header", async () => {
  const header = v2(1, 0x11, IPV4_BODY);
  const after = new Uint8Array([0, 14, 3, 0, 0, 0, 0, 0]);
  const whole = new Uint8Array([...header, ...after]);
  for (const cut of [[1], [5, 13], [12, 16, 20], [header.length], [header.length + 3]]) {
    const chunks: Uint8Array[] = [];
    let from = 0;
    for (const to of [...cut, whole.length]) {
      chunks.push(whole.slice(from, to));
      from = to;
    }
    const { header: parsed, rest } = await readProxyHeader(chunked(chunks));
    assert.equal(parsed.source?.hostname, "192.0.2.7");
    // Whatever was read past the header comes back in `rest`, and nothing else.
    const readTo = [...cut, whole.length].find((b) => b >= header.length)!;
    assert.deepEqual(rest, whole.slice(header.length, readTo));
  }
  const v1 = text("PROXY TCP4 192.0.2.8 10.0.0.1 1 2\r\nREST");
  const split = await readProxyHeader(chunked([v1.slice(0, 7), v1.slice(7, 30), v1.slice(30)]));
  assert.equal(split.header.source?.hostname, "192.0.2.8");
  assert.deepEqual(split.rest, text("REST"));
});

Deno.test("readProxyHeader refuses truncated, garbage and late headers", async (t) => {
  await t.step("closed mid-header", async () => {
    const header = v2(1, 0x11, IPV4_BODY);
    await assert.rejects(readProxyHeader(chunked([header.slice(0, 20)])), /middle of the header/);
    await assert.rejects(readProxyHeader(chunked([])), /before any header/);
  });
  await t.step("garbage", async () => {
    await assert.rejects(readProxyHeader(chunked([text("SSH-2.0-OpenSSH\r\n")])), /signature/);
  });
  await t.step("late: a header that stops half-way times out", async () => {
    const started = performance.now();
    const source = chunked([text("PROXY TCP4 192.0.2.7")], true);
    await assert.rejects(readProxyHeader(source, { timeoutMs: 200 }), /within 200 ms/);
    assert.ok(performance.now() - started < 1000);
  });
});

Deno.test("looksLikeProxyHeader tells a forged header from an MMP frame", () => {
  assert.ok(looksLikeProxyHeader(text("PROXY TCP4")));
  assert.ok(looksLikeProxyHeader(text("PRO")));
  assert.ok(looksLikeProxyHeader(V2_SIGNATURE.slice(0, 3)));
  assert.ok(!looksLikeProxyHeader(new Uint8Array([0, 14, 3, 0])));
  assert.ok(!looksLikeProxyHeader(new Uint8Array()));
});
