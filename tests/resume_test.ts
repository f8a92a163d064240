import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { writeAll, writeFrame } from "../src/protocol/frame_writer.ts";
import { hashFile } from "../src/protocol/checksum.ts";
import { type ClientEvent, runJob, type RunJobOptions } from "../src/client/client.ts";
import { type CutRule, FaultProxy } from "./_fault_proxy.ts";
import {
  buildPermissions,
  eventually,
  ffmpeg,
  join,
  listDir,
  quotaReleased,
  RawClient,
  spawnServer,
  startServer,
  storageSettles,
  tempDir,
} from "./_helpers.ts";

/** A few hundred KB of FLAC (pink noise does not compress much): quick to send and to encode. */
async function makeAudio(path: string, seconds = 6): Promise<string> {
  // deno-fmt-ignore
  await ffmpeg(["-f", "lavfi", "-i", `anoisesrc=d=${seconds}:c=pink:r=44100:a=0.2`, "-ac", "2",
    "-c:a", "flac", path]);
  return path;
}

Deno.test("smoke: a resumable upload cut at half resumes and sends little twice", async () => {
  await using dir = await tempDir();
  await using srv = await startServer({ jobs: 1 });
  const input = await makeAudio(join(dir.path, "noise.mkv"));
  const { size } = await Deno.stat(input);
  await using proxy = await FaultProxy.start({
    target: srv.port,
    rate: 4e6,
    plan: (i) => (i === 0 ? { up: Math.floor(size / 2) } : undefined),
  });
  const events: ClientEvent[] = [];
  const options: RunJobOptions = {
    hostname: "127.0.0.1",
    port: proxy.port,
    request: { op: "audio" },
    input,
    output: join(dir.path, "noise.mp3"),
    resume: true,
    retryDelayMs: 50,
    onEvent: (e) => events.push(e),
  };
  const result = await runJob(options);
  assert.equal(await hashFile(result.output), result.sha256);
  assert.equal(proxy.cuts, 1);
  assert.ok(proxy.upBytes < size * 1.05, `${proxy.upBytes} of ${size}`);
  assert.ok(events.some((e) => e.stage === "reconnect"));
  assert.deepEqual(await storageSettles(srv.storageDir), []);
  await quotaReleased(srv);
  assert.deepEqual(await listDir(dir.path), ["noise.mkv", "noise.mp3"]);
});

Deno.test("twenty cuts at every stage: each run ends with the right result and empty storage", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer({ jobs: 1 });
  const input = await makeAudio(join(dir.path, "noise.mkv"));
  const blockerInput = await makeAudio(join(dir.path, "blocker.mkv"), 40);
  const { size } = await Deno.stat(input);
  const direct = { hostname: "127.0.0.1", port: srv.port, request: { op: "audio" }, input };
  const clean = await runJob({ ...direct, output: join(dir.path, "clean.mp3") });
  // A clean run through the proxy tells how many bytes each direction carries.
  let downTotal = 0;
  {
    await using proxy = await FaultProxy.start({ target: srv.port });
    await runJob({
      ...direct,
      port: proxy.port,
      output: join(dir.path, "measure.mp3"),
      resume: true,
    });
    downTotal = proxy.downBytes;
  }
  const headBytes = 400; // the request frame's head, roughly
  const acceptedBytes = 8 +
    JSON.stringify({ type: "accepted", job: "0".repeat(16), queue_position: 0 }).length;
  const queue = srv.server.queue;
  const cases: [string, (i: number) => CutRule | undefined, boolean?][] = [
    ["in the header", (i) => i === 0 ? { up: 3 } : undefined],
    ["in the request JSON", (i) => i === 0 ? { up: 30 } : undefined],
    ...[0.02, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9].map((
      f,
    ): [string, (i: number) => CutRule | undefined] => [
      `at ${f * 100} % of the upload`,
      (i) => i === 0 ? { up: headBytes + Math.floor(size * f) } : undefined,
    ]),
    [
      "after the last upload byte, before accepted",
      (i) => i === 0 ? { down: 1 } : undefined,
    ],
    ["while queued", (i) => i === 0 ? { when: () => queue.size.waiting > 0 } : undefined, true],
    [
      "while queued, twice",
      (i) => i < 2 ? { when: () => queue.size.waiting > 0 } : undefined,
      true,
    ],
    ["while running", (i) => i === 0 ? { when: () => queue.size.running > 0 } : undefined],
    ["right after accepted", (i) => i === 0 ? { down: acceptedBytes } : undefined],
    ...[0.1, 0.5, 0.9].map((f): [string, (i: number) => CutRule | undefined] => [
      `at ${f * 100} % of the result`,
      (i) => i === 0 ? { down: Math.floor(downTotal * f) } : undefined,
    ]),
    [
      "before the receipt of the acknowledgement",
      (i) => i === 0 ? { down: downTotal - 5 } : undefined,
    ],
    [
      "mid-upload, then mid-result",
      (i) => i === 0 ? { up: Math.floor(size / 3) } : i === 1 ? { down: 5000 } : undefined,
    ],
    [
      "three times in the upload",
      (i) => i < 3 ? { up: headBytes + Math.floor(size / 5) } : undefined,
    ],
  ];
  assert.equal(cases.length, 20);
  for (const [name, plan, blocked] of cases) {
    await t.step(name, async () => {
      await using proxy = await FaultProxy.start({ target: srv.port, rate: 4e6, plan });
      const blocker = blocked
        ? runJob({
          ...direct,
          localAddress: "127.0.0.9",
          input: blockerInput,
          output: join(dir.path, "blocker.mp3"),
          force: true,
        })
        : undefined;
      if (blocker) await eventually(() => queue.size.running > 0);
      const output = join(dir.path, "out.mp3");
      const result = await runJob({
        ...direct,
        port: proxy.port,
        output,
        force: true,
        resume: true,
        retryDelayMs: 20,
        pollMs: 200,
      });
      await blocker;
      assert.equal(result.sha256, clean.sha256);
      assert.equal(await hashFile(output), clean.sha256);
      assert.ok(proxy.cuts >= 1, `${proxy.cuts} cuts`);
      assert.deepEqual(await storageSettles(srv.storageDir), []);
      assert.ok(await eventually(() => srv.server.core.resumable.size === 0));
      await quotaReleased(srv);
    });
  }
  assert.deepEqual((await listDir(dir.path)).filter((n) => n.includes("partial")), []);
});

const ID = "0123456789abcdef0123456789abcdef";

/** Sends the head of a resumable audio request and `bytes` of its payload, then waits for a frame. */
async function sendPart(
  client: RawClient,
  bytes: Uint8Array,
  json: Record<string, unknown>,
  from: number,
  to: number,
): Promise<void> {
  await client.sendHead({ op: "audio", ...json }, "mkv", bytes.length - from);
  await client.send(bytes.subarray(from, to));
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

async function ask(port: number, json: Record<string, unknown>, ip?: string) {
  using client = await RawClient.open(port, ip);
  await client.sendHead(json);
  return (await client.nextFrame())?.json;
}

Deno.test("a broken upload is held for its client alone; bad resumes get clear errors", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const bytes = await Deno.readFile(await makeAudio(join(dir.path, "a.mkv"), 3));
  const sha256 = sha256Hex(bytes);
  const half = Math.floor(bytes.length / 2);
  const registry = srv.server.core.resumable;
  {
    using client = await RawClient.open(srv.port);
    await sendPart(client, bytes, { sha256, upload: ID }, 0, half);
    assert.ok(await eventually(() => registry.size === 1 && srv.server.storage.reserved > 0));
  }
  assert.ok(await eventually(() => registry.parked === 1));

  await t.step("another address cannot see or reach it", async () => {
    const answer = await ask(srv.port, { op: "resume", upload: ID }, "127.0.0.2");
    assert.equal(answer?.code, "UNKNOWN_UPLOAD");
    using client = await RawClient.open(srv.port, "127.0.0.2");
    await sendPart(client, bytes, { sha256, upload: ID, offset: half }, half, half);
    assert.equal((await client.nextFrame())?.json.code, "UNKNOWN_UPLOAD");
  });
  await t.step("unknown ids, bad ids and a missing sha256 are refused", async () => {
    const other = "f".repeat(32);
    assert.equal((await ask(srv.port, { op: "resume", upload: other }))?.code, "UNKNOWN_UPLOAD");
    assert.equal((await ask(srv.port, { op: "resume", upload: "xyz" }))?.code, "BAD_REQUEST");
    assert.equal((await ask(srv.port, { op: "attach", job: "0".repeat(16) }))?.code, "UNKNOWN_JOB");
    assert.equal((await ask(srv.port, { op: "cancel", job: "0".repeat(16) }))?.code, "UNKNOWN_JOB");
    using client = await RawClient.open(srv.port, "127.0.0.3");
    await client.sendHead({ op: "audio", upload: other }, "mkv", 10);
    assert.equal((await client.nextFrame())?.json.code, "BAD_REQUEST");
  });
  await t.step("a new job from the same address is BUSY and points to mmp attach", async () => {
    using client = await RawClient.open(srv.port);
    await client.sendHead({ op: "audio" }, "mkv", 10);
    const reply = await client.nextFrame();
    assert.equal(reply?.json.code, "BUSY");
    assert.match(String(reply?.json.solution), /mmp attach/);
  });
  await t.step("a different size, sha256, request or an offset beyond what is held", async () => {
    const cases: [Record<string, unknown>, string, number][] = [
      [{ sha256, upload: ID, offset: half }, "mkv", 1], // one byte more than the file
      [{ sha256: "0".repeat(64), upload: ID, offset: half }, "mkv", 0],
      [{ sha256, upload: ID, offset: half, name: "other.mkv" }, "mkv", 0],
      [{ sha256, upload: ID, offset: half }, "flac", 0],
      [{ sha256, upload: ID, offset: half + 1 }, "mkv", 0],
    ];
    for (const [json, mediaType, extra] of cases) {
      using client = await RawClient.open(srv.port);
      const offset = Number(json.offset);
      await client.sendHead({ op: "audio", ...json }, mediaType, bytes.length - offset + extra);
      const reply = await client.nextFrame();
      assert.equal(reply?.json.code, "RESUME_MISMATCH", JSON.stringify(json));
      assert.ok(String(reply?.json.description).length > 10);
    }
    assert.equal(registry.parked, 1); // still held, untouched
  });
  await t.step("the right client resumes from the offset it is told", async () => {
    using client = await RawClient.open(srv.port);
    await client.sendHead({ op: "resume", upload: ID });
    const told = await client.nextFrame();
    assert.deepEqual(told?.json, { type: "resume", upload: ID, offset: half, size: bytes.length });
    await sendPart(client, bytes, { sha256, upload: ID, offset: half }, half, bytes.length);
    const accepted = await client.nextFrame();
    assert.equal(accepted?.json.type, "accepted");
    const result = await client.nextFrame();
    assert.equal(result?.json.type, "result");
    assert.equal(result?.json.offset, 0);
    assert.equal(result?.json.size, result?.header.payloadSize);
    await client.reader.copyPayload(result!.header.payloadSize, () => {});
    await client.sendHead({ op: "ack" });
    assert.equal((await client.nextFrame())?.json.type, "ack");
  });
  assert.deepEqual(await storageSettles(srv.storageDir), []);
  assert.ok(await eventually(() => registry.size === 0 && srv.server.storage.reserved === 0));
});

Deno.test("a resumed upload whose whole file does not match its sha256 keeps nothing", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const bytes = await Deno.readFile(await makeAudio(join(dir.path, "a.mkv"), 2));
  const wrong = sha256Hex(bytes.subarray(1));
  const half = Math.floor(bytes.length / 2);
  {
    using client = await RawClient.open(srv.port);
    await sendPart(client, bytes, { sha256: wrong, upload: ID }, 0, half);
    assert.ok(await eventually(() => srv.server.core.resumable.size === 1));
  }
  assert.ok(await eventually(() => srv.server.core.resumable.parked === 1));
  using client = await RawClient.open(srv.port);
  await sendPart(client, bytes, { sha256: wrong, upload: ID, offset: half }, half, bytes.length);
  assert.equal((await client.nextFrame())?.json.code, "CHECKSUM_MISMATCH");
  assert.deepEqual(await storageSettles(srv.storageDir), []);
  assert.equal(srv.server.core.resumable.size, 0);
  await quotaReleased(srv);
});

Deno.test("a detached job is reattached by id, and a broken result resumes from an offset", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const bytes = await Deno.readFile(await makeAudio(join(dir.path, "a.mkv"), 3));
  const sha256 = sha256Hex(bytes);
  let job = "";
  {
    using client = await RawClient.open(srv.port);
    await sendPart(client, bytes, { sha256, upload: ID }, 0, bytes.length);
    const accepted = await client.nextFrame();
    job = String(accepted?.json.job);
  }
  // From another address: nothing.
  assert.equal((await ask(srv.port, { op: "attach", job }, "127.0.0.2"))?.code, "UNKNOWN_JOB");
  // The result, cut after 1000 bytes.
  let whole = "";
  {
    using client = await RawClient.open(srv.port);
    await client.sendHead({ op: "attach", job });
    let head = await client.nextFrame();
    if (head?.json.type === "status") head = await client.nextFrame();
    assert.equal(head?.json.type, "result");
    whole = String(head?.json.sha256);
    await client.reader.copyPayload(1000, () => {});
  }
  await eventually(() => srv.server.core.resumable.parked === 1);
  using client = await RawClient.open(srv.port);
  await client.sendHead({ op: "attach", job, offset: 1000 });
  const rest = await client.nextFrame();
  assert.equal(rest?.json.type, "result");
  assert.equal(rest?.json.offset, 1000);
  assert.equal(rest?.json.sha256, whole);
  assert.equal(rest!.header.payloadSize, Number(rest?.json.size) - 1000);
  await client.reader.copyPayload(rest!.header.payloadSize, () => {});
  await client.sendHead({ op: "ack" });
  assert.equal((await client.nextFrame())?.json.type, "ack");
  assert.deepEqual(await storageSettles(srv.storageDir), []);
  assert.equal(srv.server.core.resumable.size, 0);
});

Deno.test("the resume window ends: a partial upload, an orphaned job and an undelivered result are deleted", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer({ jobs: 1, resumeWindowSeconds: 1 });
  const bytes = await Deno.readFile(await makeAudio(join(dir.path, "a.mkv"), 3));
  const sha256 = sha256Hex(bytes);
  const registry = srv.server.core.resumable;
  const settled = async () => {
    assert.ok(await eventually(() => registry.size === 0, 4000), "the window ended");
    assert.deepEqual(await storageSettles(srv.storageDir), []);
    await quotaReleased(srv);
  };
  await t.step("a partial upload", async () => {
    {
      using client = await RawClient.open(srv.port);
      await sendPart(client, bytes, { sha256, upload: ID }, 0, 1000);
      assert.ok(await eventually(() => registry.size === 1));
    }
    assert.ok(await eventually(() => registry.parked === 1));
    assert.ok(srv.server.storage.reserved > 0);
    await settled();
    assert.equal((await ask(srv.port, { op: "resume", upload: ID }))?.code, "UNKNOWN_UPLOAD");
  });
  await t.step("an orphaned job, queued behind another", async () => {
    const blocker = runJob({
      hostname: "127.0.0.1",
      port: srv.port,
      localAddress: "127.0.0.9",
      request: { op: "audio" },
      input: await makeAudio(join(dir.path, "long.mkv"), 40),
      output: join(dir.path, "long.mp3"),
    });
    await eventually(() => srv.server.queue.size.running > 0);
    {
      using client = await RawClient.open(srv.port);
      await sendPart(client, bytes, { sha256, upload: ID }, 0, bytes.length);
      assert.equal((await client.nextFrame())?.json.type, "accepted");
    }
    assert.ok(await eventually(() => registry.size === 0, 4000), "cancelled when the window ends");
    await blocker;
    await settled();
  });
  await t.step("an undelivered result", async () => {
    {
      using client = await RawClient.open(srv.port);
      await sendPart(client, bytes, { sha256, upload: ID }, 0, bytes.length);
      assert.equal((await client.nextFrame())?.json.type, "accepted");
      assert.equal((await client.nextFrame())?.json.type, "result"); // not read, not acknowledged
    }
    assert.ok(await eventually(() => registry.parked === 1));
    await settled();
    assert.match(srv.logs.join("\n"), /expired/);
  });
});

Deno.test("a restarted server refuses a partial upload it held and deleted it", async () => {
  await using dir = await tempDir();
  const storage = join(dir.path, "storage");
  await Deno.mkdir(storage);
  const bytes = await Deno.readFile(await makeAudio(join(dir.path, "a.mkv"), 2));
  const sha256 = sha256Hex(bytes);
  {
    await using first = await spawnServer(storage);
    {
      using client = await RawClient.open(first.port);
      await sendPart(client, bytes, { sha256, upload: ID }, 0, 5000);
      assert.ok(await eventually(async () => (await listDir(storage)).length === 1));
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal((await listDir(storage)).length, 1, "held while the client is away");
    first.child.kill("SIGTERM");
    assert.equal((await first.ended()).code, 0);
  }
  assert.deepEqual(await listDir(storage), []);
  await using second = await spawnServer(storage);
  const answer = await ask(second.port, { op: "resume", upload: ID });
  assert.equal(answer?.code, "UNKNOWN_UPLOAD");
  assert.match(String(answer?.solution), /whole file/);
  assert.deepEqual(await listDir(storage), []);
});

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));

/** `mmp ARGS` as a user runs it. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...(await buildPermissions()), MAIN, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code, stdout: text(stdout), stderr: text(stderr) };
}

Deno.test("batch: three files, one corrupt: two results, one error in the summary, exit 1", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const out = join(dir.path, "out");
  await Deno.mkdir(out);
  const a = await makeAudio(join(dir.path, "a.mkv"), 2);
  const b = join(dir.path, "b.mkv");
  await Deno.writeFile(b, new Uint8Array(50_000).fill(3)); // not media at all
  const c = await makeAudio(join(dir.path, "c.mkv"), 2);
  const server = ["--server", `127.0.0.1:${srv.port}`, "--poll", "200ms"];
  await t.step("a summary table and exit 1", async () => {
    const run = await cli(["convert", a, b, c, "--to", "mp3", "--output", out, ...server]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /file 1 of 3/);
    assert.match(run.stderr, /file\s+result\s+size\s+time/);
    assert.match(run.stderr, /a\.mkv\s+ok a\.mp3/);
    assert.match(run.stderr, /b\.mkv\s+PROCESSING_FAILED/);
    assert.match(run.stderr, /c\.mkv\s+ok c\.mp3/);
    assert.match(run.stderr, /2 of 3 done, 1 failed/);
    assert.deepEqual(await listDir(out), ["a.mp3", "c.mp3"]);
  });
  await t.step("--json prints one line per file", async () => {
    const run = await cli([
      "convert",
      a,
      b,
      c,
      "--to",
      "mp3",
      "--output",
      out,
      "--force",
      "--json",
      ...server,
    ]);
    assert.equal(run.code, 1, run.stderr);
    const lines = run.stdout.trim().split("\n").map((line) => JSON.parse(line));
    assert.deepEqual(lines.map((l) => l.ok), [true, false, true]);
    assert.equal(lines[1].code, "PROCESSING_FAILED");
    assert.equal(lines[1].input, b);
  });
  await t.step("--output with several inputs must be a directory", async () => {
    const run = await cli([
      "convert",
      a,
      c,
      "--to",
      "mp3",
      "--output",
      join(out, "x.mp3"),
      ...server,
    ]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /directory/);
  });
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

Deno.test("the CLI resumes a cut upload by itself and says so", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await makeAudio(join(dir.path, "noise.mkv"));
  const { size } = await Deno.stat(input);
  await using proxy = await FaultProxy.start({
    target: srv.port,
    rate: 2e6,
    plan: (i) => (i === 1 ? { up: Math.floor(size * 0.6) } : undefined), // connection 0 is info
  });
  const run = await cli(["convert", input, "--to", "mp3", "--server", `127.0.0.1:${proxy.port}`]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /connection lost .* reconnecting/);
  assert.match(run.stderr, /connection lost — resuming upload at (5|6)\d%/);
  assert.ok(proxy.upBytes < size * 1.05, `${proxy.upBytes} of ${size}`);
  const output = join(dir.path, "noise.mp3");
  assert.equal((await Deno.stat(output)).size > 10_000, true);
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

Deno.test("Ctrl-C detaches from an accepted job; mmp attach gets its result", async () => {
  await using dir = await tempDir();
  await using srv = await startServer({ jobs: 1 });
  const blocker = runJob({
    hostname: "127.0.0.1",
    port: srv.port,
    localAddress: "127.0.0.9",
    request: { op: "audio" },
    input: await makeAudio(join(dir.path, "long.mkv"), 40),
    output: join(dir.path, "long.mp3"),
  });
  blocker.catch(() => {}); // awaited below; a failed assertion must not leave it unhandled
  await eventually(() => srv.server.queue.size.running > 0);
  const input = await makeAudio(join(dir.path, "a.mkv"), 2);
  const server = ["--server", `127.0.0.1:${srv.port}`];
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...(await buildPermissions()), MAIN, "convert", input, "--to", "mp3", ...server],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  while (!/job [0-9a-f]{16}/.test(stderr)) {
    const { value, done } = await lines.read();
    if (done) break;
    stderr += value;
  }
  child.kill("SIGINT");
  while (true) {
    const { value, done } = await lines.read();
    if (done) break;
    stderr += value;
  }
  const { code } = await child.status;
  assert.equal(code, 130, stderr);
  const job = /detached from job ([0-9a-f]{16})/.exec(stderr)?.[1];
  assert.ok(job, stderr);
  assert.match(stderr, new RegExp(`mmp attach ${job}`));
  // The job outlived the CLI: a new job from this address is BUSY, pointing at mmp attach.
  const busy = await cli(["convert", input, "--to", "wav", ...server]);
  assert.equal(busy.code, 1);
  assert.match(busy.stderr, /BUSY[\s\S]*mmp attach/);
  const attached = await cli(["attach", job, "--output", dir.path, ...server, "--poll", "200ms"]);
  assert.equal(attached.code, 0, attached.stderr);
  assert.match(attached.stderr, /wrote .*a\.mp3/);
  assert.ok((await Deno.stat(join(dir.path, "a.mp3"))).size > 10_000);
  await blocker;
  const again = await cli(["attach", job, ...server]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /UNKNOWN_JOB/);
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

/** An MMP server of protocol 2 or older: `info` is an unknown operation; the rest goes through. */
function oldServer(target: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = new Set<Promise<void>>();
  const serveOne = async (conn: Deno.TcpConn) => {
    const first = new Uint8Array(65536);
    const n = await conn.read(first) ?? 0;
    if (new TextDecoder().decode(first.subarray(8, n)).includes('"op":"info"')) {
      await writeFrame(conn, {
        type: "error",
        code: "BAD_REQUEST",
        description: "Unknown operation: info",
        solution: "Use one of: compress, resize, aspect, audio, clip, convert",
      });
      conn.close();
      return;
    }
    const upstream = await Deno.connect({ hostname: "127.0.0.1", port: target });
    await writeAll(upstream, first.subarray(0, n));
    await Promise.allSettled([
      conn.readable.pipeTo(upstream.writable),
      upstream.readable.pipeTo(conn.writable),
    ]);
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      const one = serveOne(conn).catch(() => {});
      served.add(one);
    }
  })();
  return {
    port: listener.addr.port,
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      await Promise.all(served);
    },
  };
}

Deno.test("the CLI falls back to a plain upload on a server without resume", async (t) => {
  await using dir = await tempDir();
  const input = await makeAudio(join(dir.path, "a.mkv"), 2);
  await t.step("a server that refuses the info op (protocol 1)", async () => {
    await using srv = await startServer({ resumeWindowSeconds: 0 });
    await using old = oldServer(srv.port);
    const run = await cli([
      "convert",
      input,
      "--to",
      "mp3",
      "--server",
      `127.0.0.1:${old.port}`,
      "--force",
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.doesNotMatch(run.stderr, /BAD_REQUEST|resum/);
    assert.doesNotMatch(srv.logs.join("\n"), /BAD_REQUEST/);
  });
  await t.step("a server with resuming off refuses upload ids; the CLI sends none", async () => {
    await using srv = await startServer({ resumeWindowSeconds: 0 });
    using client = await RawClient.open(srv.port);
    await client.sendHead({ op: "audio", upload: ID, sha256: "0".repeat(64) }, "mkv", 10);
    assert.equal((await client.nextFrame())?.json.code, "BAD_REQUEST");
    client.conn.close();
    const run = await cli([
      "convert",
      input,
      "--to",
      "mp3",
      "--server",
      `127.0.0.1:${srv.port}`,
      "--force",
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(await storageSettles(srv.storageDir), []);
  });
});
