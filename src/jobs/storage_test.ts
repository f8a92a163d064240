import assert from "node:assert/strict";
import { MmpError } from "../protocol/errors.ts";
import { MAX_PAYLOAD_SIZE } from "../protocol/frame.ts";
import { outputAllowance, Storage } from "./storage.ts";

Deno.test("quota accounting is exact at the 4 TB scale, over many reservations", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const storage = await Storage.open({ dir, maxBytes: 4e12 });
    const held = [];
    for (let i = 0; i < 1000; i++) held.push(await storage.reserve(1_000_003));
    assert.equal(storage.reserved, 1000 * 1_000_003);
    for (const r of held.splice(0, 500)) r[Symbol.dispose]();
    held[0]![Symbol.dispose](); // releasing twice must not drift
    held[0]![Symbol.dispose]();
    assert.equal(storage.reserved, 499 * 1_000_003);
    for (const r of held) r[Symbol.dispose]();
    assert.equal(storage.reserved, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the largest payload a header allows is refused with STORAGE_FULL, never overflowing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const storage = await Storage.open({ dir, maxBytes: 4e12 });
    const need = MAX_PAYLOAD_SIZE + outputAllowance(MAX_PAYLOAD_SIZE);
    assert.ok(Number.isSafeInteger(need) && need === 2 * MAX_PAYLOAD_SIZE);
    // 4 TB of quota holds 1 such reservation by count; 2^53 / 2^41 = 4096 more before any rounding.
    assert.ok(Number.isSafeInteger(need * 4096));
    await assert.rejects(
      storage.reserve(need * 3),
      (err) => err instanceof MmpError && err.code === "STORAGE_FULL",
    );
    assert.equal(storage.reserved, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
