import assert from "node:assert/strict";
import { runJob, ServerError } from "../src/client/client.ts";
import { encodeFrameHead } from "../src/protocol/frame.ts";
import {
  eventually,
  ffmpegChildren,
  join,
  listDir,
  makeMedia,
  probeFile,
  quotaReleased,
  RawClient,
  startServer,
  storageSettles,
  tempDir,
} from "./_helpers.ts";

Deno.test("audio job returns an MP3 as long as the input and leaves storage empty", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await makeMedia(join(dir.path, "talk.mp4"), { duration: 3 });
  const output = join(dir.path, "talk.mp3");
  const result = await runJob({
    hostname: "127.0.0.1",
    port: srv.port,
    request: { op: "audio" },
    input,
    output,
  });
  assert.equal(result.mediaType, "mp3");
  assert.equal(result.name, "talk.mp3");
  const info = await probeFile(output);
  assert.equal(info.streams.length, 1);
  assert.equal(info.streams[0]!.codec, "mp3");
  const source = await probeFile(input);
  assert.ok(
    Math.abs(info.duration - source.duration) < 0.5,
    `${info.duration} vs ${source.duration}`,
  );
  assert.deepEqual(await storageSettles(srv.storageDir), []);
  assert.match(srv.logs.join("\n"), /127\.0\.0\.1 audio .* ok/);
});

Deno.test("a video without sound gets NO_AUDIO with description and solution", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await makeMedia(join(dir.path, "silent.mp4"), { audio: false });
  const error = await runJob({
    hostname: "127.0.0.1",
    port: srv.port,
    request: { op: "audio" },
    input,
    output: join(dir.path, "silent.mp3"),
  }).catch((err) => err);
  assert.ok(error instanceof ServerError, String(error));
  assert.equal(error.code, "NO_AUDIO");
  assert.match(error.message, /no audio/i);
  assert.ok(error.solution.length > 10);
  assert.deepEqual(await listDir(dir.path), ["silent.mp4"]);
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

Deno.test("a payload that does not match its sha256 gets CHECKSUM_MISMATCH", async () => {
  await using srv = await startServer();
  using client = await RawClient.open(srv.port);
  const payload = new Uint8Array(100_000).fill(7);
  await client.sendHead({ op: "audio", sha256: "0".repeat(64) }, "mp4", payload.length);
  await client.send(payload);
  const reply = await client.nextFrame();
  assert.equal(reply?.json.type, "error");
  assert.equal(reply?.json.code, "CHECKSUM_MISMATCH");
  assert.equal(reply?.header.mediaSize, 0);
  assert.equal(reply?.header.payloadSize, 0);
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

Deno.test("status replies come while a job runs and the result is pushed without a poll", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  // Four minutes of FLAC: long enough to poll a few times while it encodes.
  const input = await makeMedia(join(dir.path, "long.mkv"), {
    video: false,
    duration: 240,
    codecArgs: ["-c:a", "flac"],
  });
  const bytes = await Deno.readFile(input);
  using client = await RawClient.open(srv.port);
  await client.sendHead({ op: "audio", name: "long.mkv" }, "mkv", bytes.length);
  await client.send(bytes);
  const accepted = await client.nextFrame();
  assert.equal(accepted?.json.type, "accepted");
  assert.match(String(accepted?.json.job), /^[0-9a-f]{16}$/);
  assert.equal(accepted?.json.queue_position, 0);

  await client.sendHead({ op: "status" });
  const status = await client.nextFrame();
  assert.equal(status?.json.type, "status");
  assert.equal(status?.json.job, accepted?.json.job);
  assert.ok(["queued", "running"].includes(String(status?.json.state)));
  const progress = Number(status?.json.progress);
  assert.ok(progress >= 0 && progress <= 1);

  // No more polls: the next frame must be the result, pushed by the server.
  const result = await client.nextFrame();
  assert.equal(result?.json.type, "result");
  assert.equal(result?.mediaType, "mp3");
  assert.equal(result?.json.name, "long.mp3");
  assert.match(String(result?.json.sha256), /^[0-9a-f]{64}$/);
  assert.ok(result!.header.payloadSize > 100_000);
  await client.reader.copyPayload(result!.header.payloadSize, () => {});
  assert.equal(await client.nextFrame(), null);
  client.conn.close();
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

Deno.test("a second job from the same IP is BUSY while other IPs are served", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await makeMedia(join(dir.path, "clip.mp4"));
  const { size } = await Deno.stat(input);

  // 127.0.0.2 announces an upload and holds its slot from the moment its header arrives.
  using holder = await RawClient.open(srv.port, "127.0.0.2");
  await holder.sendHead({ op: "audio" }, "mp4", size);
  await holder.send(new Uint8Array(1000));

  using second = await RawClient.open(srv.port, "127.0.0.2");
  await second.sendHead({ op: "audio" }, "mp4", size);
  const busy = await second.nextFrame();
  assert.equal(busy?.json.code, "BUSY");
  assert.ok(String(busy?.json.solution).length > 0);

  const result = await runJob({
    hostname: "127.0.0.1",
    port: srv.port,
    localAddress: "127.0.0.3",
    request: { op: "audio" },
    input,
    output: join(dir.path, "clip.mp3"),
  });
  assert.equal((await probeFile(result.output)).streams[0]?.codec, "mp3");
  holder.conn.close();
  assert.deepEqual(await storageSettles(srv.storageDir), []);
  // The slot is free again once the holder is gone.
  const again = await runJob({
    hostname: "127.0.0.1",
    port: srv.port,
    localAddress: "127.0.0.2",
    request: { op: "audio" },
    input,
    output: join(dir.path, "again.mp3"),
  });
  assert.equal(again.mediaType, "mp3");
});

Deno.test("STORAGE_FULL arrives before any payload byte is sent", async () => {
  await using srv = await startServer({ maxStorage: 1_000_000 });
  using client = await RawClient.open(srv.port);
  await client.sendHead({ op: "audio" }, "mp4", 10_000_000);
  const reply = await client.nextFrame();
  assert.equal(reply?.json.code, "STORAGE_FULL");
  assert.match(String(reply?.json.description), /room/);
  await quotaReleased(srv);
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

Deno.test("a disconnect mid-upload leaves nothing and frees the IP", async () => {
  await using srv = await startServer();
  {
    using client = await RawClient.open(srv.port, "127.0.0.4");
    await client.sendHead({ op: "audio" }, "mp4", 5_000_000);
    await client.send(new Uint8Array(2_000_000));
    assert.ok(await eventually(async () => (await listDir(srv.storageDir)).length > 0));
  }
  assert.deepEqual(await storageSettles(srv.storageDir), []);
  assert.ok(await eventually(() => srv.server.storage.reserved === 0));
  using next = await RawClient.open(srv.port, "127.0.0.4");
  await next.sendHead({ op: "audio" }, "mp4", 4);
  await next.send(new Uint8Array(4));
  const reply = await next.nextFrame();
  assert.notEqual(reply?.json.code, "BUSY");
});

Deno.test("an upload that stalls gets TIMEOUT and its partial file is deleted", async () => {
  await using srv = await startServer({ idleTimeoutSeconds: 1 });
  using client = await RawClient.open(srv.port);
  await client.sendHead({ op: "audio" }, "mp4", 1_000_000);
  await client.send(new Uint8Array(300_000));
  const reply = await client.nextFrame();
  assert.equal(reply?.json.code, "TIMEOUT");
  assert.deepEqual(await storageSettles(srv.storageDir), []);
  await quotaReleased(srv);
});

Deno.test("the request is refused before the payload when it is bad", async (t) => {
  await using srv = await startServer();
  const cases: [string, Record<string, unknown>, string, string][] = [
    ["unknown op", { op: "explode" }, "mp4", "BAD_REQUEST"],
    ["missing argument", { op: "resize" }, "mp4", "BAD_REQUEST"],
    ["unknown key", { op: "audio", bitrate: 320 }, "mp4", "BAD_REQUEST"],
    ["bad sha256", { op: "audio", sha256: "xyz" }, "mp4", "BAD_REQUEST"],
    ["unsupported media", { op: "audio" }, "../etc/passwd", "UNSUPPORTED_MEDIA"],
  ];
  for (const [name, json, media, code] of cases) {
    await t.step(name, async () => {
      using client = await RawClient.open(srv.port);
      await client.sendHead(json, media, 1_000_000);
      const reply = await client.nextFrame();
      assert.equal(reply?.json.code, code);
      assert.ok(String(reply?.json.description).length > 0);
    });
  }
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

Deno.test("MIME media types are accepted like extensions", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const bytes = await Deno.readFile(await makeMedia(join(dir.path, "m.mp4")));
  using client = await RawClient.open(srv.port);
  await client.send(encodeFrameHead({ op: "audio" }, "video/mp4", bytes.length));
  await client.send(bytes);
  assert.equal((await client.nextFrame())?.json.type, "accepted");
  const result = await client.nextFrame();
  assert.equal(result?.json.type, "result");
  await client.reader.copyPayload(result!.header.payloadSize, () => {});
});

Deno.test("cancel stops the job with CANCELLED and deletes its files", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await makeMedia(join(dir.path, "long.mkv"), {
    video: false,
    duration: 600,
    codecArgs: ["-c:a", "flac"],
  });
  const bytes = await Deno.readFile(input);
  using client = await RawClient.open(srv.port);
  await client.sendHead({ op: "audio" }, "mkv", bytes.length);
  await client.send(bytes);
  assert.equal((await client.nextFrame())?.json.type, "accepted");
  assert.ok(await eventually(async () => (await ffmpegChildren()).length > 0), "ffmpeg never ran");
  await client.sendHead({ op: "cancel" });
  const reply = await client.nextFrame();
  assert.equal(reply?.json.code, "CANCELLED");
  assert.deepEqual(await storageSettles(srv.storageDir, 1000), []);
  assert.deepEqual(await ffmpegChildren(), []);
});

Deno.test("the client stops uploading and reports an early error frame", async () => {
  await using dir = await tempDir();
  await using srv = await startServer({ maxStorage: 1_000_000 });
  const input = join(dir.path, "big.mp4");
  await Deno.writeFile(input, new Uint8Array(64 * 2 ** 20));
  let sent = 0;
  const error = await runJob({
    hostname: "127.0.0.1",
    port: srv.port,
    request: { op: "audio" },
    input,
    output: join(dir.path, "big.mp3"),
    onEvent: (event) => {
      if (event.stage === "upload") sent = event.sent;
    },
  }).catch((err) => err);
  assert.ok(error instanceof ServerError, String(error));
  assert.equal(error.code, "STORAGE_FULL");
  assert.ok(sent < 64 * 2 ** 20, `the client sent all ${sent} bytes`);
  assert.deepEqual(await listDir(dir.path), ["big.mp4"]);
});
