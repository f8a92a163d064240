import assert from "node:assert/strict";
import { Job, JobQueue } from "./queue.ts";

/** A job that runs until `finish` is called. */
function held(id: string) {
  const gate = Promise.withResolvers<void>();
  const job = new Job(id, async () => await gate.promise);
  return { job, finish: () => gate.resolve() };
}

/** Finishes a held job and lets the queue react. */
async function finishAndSettle(entry: { job: Job<void>; finish: () => void }) {
  entry.finish();
  await entry.job.done;
  await Promise.resolve();
}

/** An all-core job that hands out its `useThreads` once started, then waits to be finished. */
function lender(id: string) {
  const phase = Promise.withResolvers<(threads?: number) => void>();
  const gate = Promise.withResolvers<void>();
  const job = new Job(id, async (_signal, _progress, useThreads) => {
    phase.resolve(useThreads);
    await gate.promise;
  });
  return { job, useThreads: phase.promise, finish: () => gate.resolve() };
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

Deno.test("a job in a one-thread phase lends its other threads to the first job that fits", async () => {
  const queue = new JobQueue({ cpus: 2 });
  const compress = lender("c");
  const next = held("n"); // all-core, undeclared: the head of the line
  const mp3 = held("m");
  queue.declareThreads("m", 1);
  for (const job of [compress.job, next.job, mp3.job]) queue.submit(job);
  const useThreads = await compress.useThreads;
  assert.deepEqual(queue.size, { running: 1, waiting: 2 });
  useThreads(1);
  // The MP3 borrows the lent thread, past the all-core job at the head.
  assert.equal(mp3.job.state, "running");
  assert.equal(next.job.state, "queued");
  assert.equal(queue.usedThreads, 2);
  useThreads();
  assert.equal(queue.usedThreads, 3); // the borrower overlaps the lender's next phase
  await finishAndSettle(compress);
  // The lender is gone: the head waits for the borrower, and nothing else borrows.
  assert.equal(next.job.state, "queued");
  await finishAndSettle(mp3);
  assert.equal(next.job.state, "running");
  next.finish();
  await queue.idle();
});

Deno.test("a head that does not fit the lent threads starts on one, and lends once its lender ends", async () => {
  const queue = new JobQueue({ cpus: 2 });
  const first = lender("c1");
  const second = lender("c2"); // all-core too: it cannot fit one lent thread
  const mp3 = held("m");
  queue.declareThreads("m", 1);
  for (const job of [first.job, second.job]) queue.submit(job);
  const useThreads = await first.useThreads;
  useThreads(1);
  // No waiting job fits one thread, but the head starts on it; a job arriving later waits.
  assert.equal(second.job.state, "running");
  assert.equal(queue.borrowers, 1);
  queue.submit(mp3.job);
  assert.equal(mp3.job.state, "queued");
  useThreads();
  assert.equal(queue.usedThreads, 4); // two all-core jobs oversubscribe rather than idle
  await finishAndSettle(first);
  // Its lender gone, the borrower is a job of its own: the MP3 waits until it lends a thread.
  assert.equal(queue.borrowers, 0);
  assert.equal(mp3.job.state, "queued");
  (await second.useThreads)(1);
  assert.equal(mp3.job.state, "running");
  assert.equal(queue.borrowers, 1);
  await finishAndSettle(second);
  mp3.finish();
  await queue.idle();
});
