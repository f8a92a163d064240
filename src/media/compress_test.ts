import assert from "node:assert/strict";
import { packetsFromCsv, packetsFromFramecrc, rateRatio, samplePlan } from "./compress_search.ts";
import { ssimDb } from "./metric.ts";

Deno.test("samplePlan: short videos whole, then a fifth of them, capped at 8 s", () => {
  assert.deepEqual(samplePlan(1.5), { starts: [0], length: 1.5 });
  assert.deepEqual(samplePlan(10), { starts: [4], length: 2 });
  const total = (d: number) => {
    const plan = samplePlan(d);
    return plan.starts.length * plan.length;
  };
  assert.equal(total(20), 4);
  assert.equal(total(60), 8);
  // The search's cost is fixed beyond 40 s: an hour is sampled as much as a minute.
  assert.equal(total(3600), 8);
  for (const duration of [3, 10, 25, 60, 3600]) {
    const { starts, length } = samplePlan(duration);
    for (const start of starts) {
      assert.ok(start > 0 && start + length <= duration, `${duration}: ${start}+${length}`);
    }
  }
});

Deno.test("ssimDb spreads SSIM near 1 on a linear scale", () => {
  assert.ok(Math.abs(ssimDb(0.99) - 20) < 1e-9);
  assert.ok(Math.abs(ssimDb(0.999) - 30) < 1e-9);
  assert.equal(ssimDb(1), 60);
});

/** ffprobe's packet CSV: one packet per second of `bytes[i]`, the first a keyframe. */
function packets(bytes: number[], time = (i: number) => i.toFixed(6)): string {
  return bytes.map((b, i) => `${time(i)},${time(i)},${b},${i === 0 ? "K_" : "__"}`).join("\n");
}

Deno.test("rateRatio: the pieces' bitrate against the whole, keyframes left out", () => {
  const plan = { starts: [4], length: 2 };
  // Seconds 4 and 5 carry twice the rest: the pieces are busier than the video.
  const busy = [100, 10, 10, 10, 20, 20, 10, 10, 10, 10];
  const { ratio, videoBytes } = rateRatio(packets(busy), plan, 10);
  // Keyframe out: 20 bytes/s in the pieces against 110 bytes over the 9 s the packets span.
  assert.ok(Math.abs(ratio - 20 / (110 / 9)) < 1e-9, String(ratio));
  assert.equal(videoBytes, 210);
  // Even packets: 1, whatever the keyframe weighs.
  assert.equal(rateRatio(packets([500, 10, 10, 10, 10, 10, 10, 10, 10, 10]), plan, 10).ratio, 1);
});

Deno.test("rateRatio: elementary streams without timestamps, clamps and nothing known", () => {
  const plan = { starts: [4], length: 2 };
  const na = packets([10, 10, 10, 10, 40, 40, 10, 10, 10, 10], () => "N/A");
  // No timestamps: spread evenly over the duration, so the busy packets still land in the piece.
  assert.ok(rateRatio(na, plan, 10).ratio > 2 - 1e-9);
  assert.equal(rateRatio(na, plan, 10).videoBytes, 160);
  // Clamped to 0.5…2, and 1 when nothing falls in the pieces or nothing was read.
  assert.equal(rateRatio(packets([10, 1, 1, 1, 1000, 1000, 1, 1, 1, 1]), plan, 10).ratio, 2);
  assert.deepEqual(rateRatio("", plan, 10), { ratio: 1, videoBytes: 0 });
  assert.equal(rateRatio(packets([10, 10, 10]), plan, 10).ratio, 1);
});

Deno.test("packet lists from ffprobe's CSV and from the scoring pass's framecrc agree", () => {
  const csv = "11317,K_\n17862,__\n3,__\n2166,K_D\n";
  const framecrc = [
    "#tb 0: 1/1000",
    "#codec_id 0: av1",
    "0,          0,          0,       40,    11317, 0x9b710464",
    "0,         40,         40,       40,    17862, 0x0183b50e, F=0x0",
    "0,         80,         80,       40,        3, 0x01380103, F=0x0",
    "0,        120,        120,       40,     2166, 0xc9403c2e, F=0x5", // key and discard
    "",
  ].join("\n");
  const expected = [
    { size: 11317, keyframe: true },
    { size: 17862, keyframe: false },
    { size: 3, keyframe: false },
    { size: 2166, keyframe: true },
  ];
  assert.deepEqual(packetsFromCsv(csv), expected);
  assert.deepEqual(packetsFromFramecrc(framecrc), expected);
});
