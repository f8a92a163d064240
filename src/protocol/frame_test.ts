import assert from "node:assert/strict";
import { concat } from "../../tests/_bytes.ts";
import {
  decodeHeader,
  encodeFrameHead,
  encodeHeader,
  FrameError,
  type FrameHeader,
  MAX_PAYLOAD_SIZE,
} from "./frame.ts";
import { type ByteSource, FrameReader, TruncatedFrameError } from "./frame_reader.ts";

/** Serves `bytes` in reads of at most `step` bytes, like a slow network. */
function sourceOf(bytes: Uint8Array, step = Infinity): ByteSource {
  let offset = 0;
  return {
    read(p) {
      if (offset >= bytes.length) return Promise.resolve(null);
      const n = Math.min(p.length, step, bytes.length - offset);
      p.set(bytes.subarray(offset, offset + n));
      offset += n;
      return Promise.resolve(n);
    },
  };
}

Deno.test("header round-trips at the edge values of every field", () => {
  const cases: FrameHeader[] = [
    { jsonSize: 0, mediaSize: 0, payloadSize: 0 },
    { jsonSize: 65535, mediaSize: 255, payloadSize: MAX_PAYLOAD_SIZE },
    { jsonSize: 1, mediaSize: 1, payloadSize: 2 ** 32 },
    { jsonSize: 256, mediaSize: 3, payloadSize: 2 ** 32 - 1 },
  ];
  for (const header of cases) assert.deepEqual(decodeHeader(encodeHeader(header)), header);
});

Deno.test("header is big-endian u16, u8, u40 byte for byte", () => {
  const bytes = encodeHeader({ jsonSize: 0x0102, mediaSize: 0x03, payloadSize: 0x0405060708 });
  assert.deepEqual([...bytes], [1, 2, 3, 4, 5, 6, 7, 8]);
  const max = encodeHeader({ jsonSize: 65535, mediaSize: 255, payloadSize: MAX_PAYLOAD_SIZE });
  assert.deepEqual([...max], [255, 255, 255, 255, 255, 255, 255, 255]);
});

Deno.test("header sizes over their field's limit are refused", () => {
  const over: FrameHeader[] = [
    { jsonSize: 65536, mediaSize: 0, payloadSize: 0 },
    { jsonSize: 0, mediaSize: 256, payloadSize: 0 },
    { jsonSize: 0, mediaSize: 0, payloadSize: 2 ** 40 },
    { jsonSize: -1, mediaSize: 0, payloadSize: 0 },
    { jsonSize: 0, mediaSize: 0, payloadSize: 1.5 },
  ];
  for (const header of over) assert.throws(() => encodeHeader(header), FrameError);
  assert.throws(() => encodeFrameHead({ x: "a".repeat(70000) }), FrameError);
  assert.throws(() => decodeHeader(new Uint8Array(7)), FrameError);
});

Deno.test("a frame split into one-byte reads decodes the same", async () => {
  const payload = crypto.getRandomValues(new Uint8Array(5000));
  const frame = concat(encodeFrameHead({ op: "audio", n: 1 }, "mp4", payload.length), payload);
  for (const step of [1, 3, 8, 4096]) {
    const reader = new FrameReader(sourceOf(frame, step), { bufferSize: 1024 });
    const head = await reader.readFrameHead();
    assert.deepEqual(head?.json, { op: "audio", n: 1 });
    assert.equal(head?.mediaType, "mp4");
    const got: number[] = [];
    await reader.copyPayload(head!.header.payloadSize, (chunk) => void got.push(...chunk));
    assert.deepEqual(got, [...payload]);
    assert.equal(await reader.readFrameHead(), null);
  }
});

Deno.test("a JSON near the 64 KiB limit grows the head buffer; a small one after it still fits", async () => {
  const big = { op: "audio", pad: "x".repeat(65_000) };
  const frames = concat(
    encodeFrameHead({ type: "status", i: 1 }),
    encodeFrameHead(big, "mp4", 2),
    new Uint8Array([1, 2]),
    encodeFrameHead({ type: "status", i: 3 }),
  );
  for (const step of [7, 70_000]) {
    const reader = new FrameReader(sourceOf(frames, step));
    assert.equal((await reader.readFrameHead())?.json.i, 1);
    const head = await reader.readFrameHead();
    assert.deepEqual(head?.json, big);
    const payload: number[] = [];
    await reader.copyPayload(2, (c) => void payload.push(...c));
    assert.deepEqual(payload, [1, 2]);
    assert.equal((await reader.readFrameHead())?.json.i, 3);
  }
});

Deno.test("several frames back to back decode in order", async () => {
  const frames = concat(
    encodeFrameHead({ type: "status", i: 1 }),
    encodeFrameHead({ type: "status", i: 2 }, "mp3", 3),
    new Uint8Array([7, 8, 9]),
    encodeFrameHead({ type: "status", i: 3 }),
  );
  const reader = new FrameReader(sourceOf(frames, 5));
  const seen: unknown[] = [];
  for (let head = await reader.readFrameHead(); head; head = await reader.readFrameHead()) {
    seen.push(head.json.i);
    const payload: number[] = [];
    await reader.copyPayload(head.header.payloadSize, (c) => void payload.push(...c));
    if (head.json.i === 2) assert.deepEqual(payload, [7, 8, 9]);
  }
  assert.deepEqual(seen, [1, 2, 3]);
});

Deno.test("truncated frames and bad sections are errors, a clean end is null", async (t) => {
  const frame = concat(encodeFrameHead({ op: "audio" }, "mp4", 10), new Uint8Array(4));
  await t.step("end inside the header", async () => {
    const reader = new FrameReader(sourceOf(frame.subarray(0, 5)));
    await assert.rejects(reader.readHeader(), TruncatedFrameError);
  });
  await t.step("end inside the payload", async () => {
    const reader = new FrameReader(sourceOf(frame));
    const head = await reader.readFrameHead();
    await assert.rejects(
      reader.copyPayload(head!.header.payloadSize, () => {}),
      TruncatedFrameError,
    );
  });
  await t.step("clean end before a header", async () => {
    assert.equal(await new FrameReader(sourceOf(new Uint8Array())).readFrameHead(), null);
  });
  for (const [name, json] of [["array", "[1]"], ["number", "5"], ["not JSON", "{op"]]) {
    await t.step(`JSON section: ${name}`, async () => {
      const bytes = new TextEncoder().encode(json);
      const head = encodeHeader({ jsonSize: bytes.length, mediaSize: 0, payloadSize: 0 });
      const reader = new FrameReader(sourceOf(concat(head, bytes)));
      await assert.rejects(reader.readFrameHead(), FrameError);
    });
  }
  await t.step("invalid UTF-8 in the media type decodes to U+FFFD", async () => {
    const json = new TextEncoder().encode("{}");
    const head = encodeHeader({ jsonSize: json.length, mediaSize: 2, payloadSize: 0 });
    const reader = new FrameReader(sourceOf(concat(head, json, new Uint8Array([0xc3, 0x28]))));
    assert.equal((await reader.readFrameHead())?.mediaType, "\ufffd(");
  });
});
