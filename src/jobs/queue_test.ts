import assert from "node:assert/strict";
import { Job, JobQueue } from "./queue.ts";

/** A job that runs until `finish` is called. */
function held(id: string) {
  const gate = Promise.withResolvers<void>();
  const job = new Job(id, async () => await gate.promise);
  return { job, finish: () => gate.resolve() };
}

Deno.test("the CPU budget runs two one-thread jobs at once on 2 cores, an all-core job alone", async () => {
  const queue = new JobQueue({ cpus: 2 });
  const mp3a = held("a");
  const mp3b = held("b");
  const x264 = held("c");
  const mp3c = held("d");
  queue.declareThreads("a", 1);
  queue.declareThreads("b", 1);
  queue.declareThreads("d", 1);
  // "c" is undeclared: it costs the whole budget.
  for (const { job } of [mp3a, mp3b, x264, mp3c]) queue.submit(job);
  assert.deepEqual(queue.size, { running: 2, waiting: 2 });
  assert.equal(queue.usedThreads, 2);
  assert.equal(queue.waitingThreads, 3);
  mp3a.finish();
  await mp3a.job.done;
  await Promise.resolve();
  // The all-core job is next in line: the MP3 behind it does not overtake it.
  assert.deepEqual(queue.size, { running: 1, waiting: 2 });
  mp3b.finish();
  await mp3b.job.done;
  await Promise.resolve();
  assert.deepEqual(queue.size, { running: 1, waiting: 1 });
  assert.equal(x264.job.state, "running");
  assert.equal(queue.usedThreads, 2);
  x264.finish();
  await x264.job.done;
  await Promise.resolve();
  assert.equal(mp3c.job.state, "running");
  assert.equal(queue.usedThreads, 1);
  mp3c.finish();
  await queue.idle();
  assert.equal(queue.usedThreads, 0);
});

Deno.test("--jobs caps the count within the budget, and threads are capped to the budget", async () => {
  const queue = new JobQueue({ cpus: 4, jobs: 1 });
  const a = held("a");
  const b = held("b");
  queue.declareThreads("a", 1);
  queue.declareThreads("b", 64);
  queue.submit(a.job);
  queue.submit(b.job);
  assert.deepEqual(queue.size, { running: 1, waiting: 1 });
  assert.equal(queue.waitingThreads, 4);
  a.finish();
  b.finish();
  await queue.idle();
  assert.throws(() => new JobQueue({ cpus: 0 }), RangeError);
});
