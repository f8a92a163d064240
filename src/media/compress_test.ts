import assert from "node:assert/strict";
import { samplePlan } from "./compress_search.ts";
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
