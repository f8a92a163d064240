import assert from "node:assert/strict";
import { type JobResult, runJob, ServerError } from "../src/client/client.ts";
import type { MediaInfo } from "../src/media/probe.ts";
import {
  eventually,
  ffmpeg,
  ffmpegChildren,
  join,
  makeMedia,
  type MediaSpec,
  probeFile,
  RawClient,
  startServer,
  storageSettles,
  tempDir,
  type TestServer,
} from "./_helpers.ts";

const H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"];

/** Inputs in many containers and codecs, as users really have them. */
const CONTAINERS: Record<string, string[]> = {
  "mp4": [...H264, "-c:a", "aac"],
  "mkv": [...H264, "-c:a", "libopus"],
  "mov": [...H264, "-c:a", "aac"],
  "webm": ["-c:v", "libvpx", "-deadline", "realtime", "-b:v", "300k", "-c:a", "libvorbis"],
  "avi": ["-c:v", "msmpeg4v2", "-q:v", "5", "-c:a", "libmp3lame"],
  "flv": ["-c:v", "flv", "-q:v", "5", "-c:a", "libmp3lame", "-ar", "44100"],
  "ts": ["-c:v", "mpeg2video", "-q:v", "5", "-c:a", "mp2"],
  "ogv": ["-c:v", "libtheora", "-q:v", "5", "-c:a", "libvorbis"],
};

async function job(
  srv: TestServer,
  input: string,
  output: string,
  request: Record<string, unknown>,
): Promise<JobResult> {
  return await runJob({ hostname: "127.0.0.1", port: srv.port, request, input, output });
}

async function jobError(
  srv: TestServer,
  input: string,
  request: Record<string, unknown>,
): Promise<ServerError> {
  const error = await job(srv, input, `${input}.never`, request).catch((err) => err);
  assert.ok(error instanceof ServerError, `expected a server error, got ${error}`);
  return error;
}

/** The video's display aspect ratio from ffprobe's width, height and SAR. */
function displayAspect(info: MediaInfo): number {
  const video = info.video!;
  return (video.width! * (video.sampleAspect ?? 1)) / video.height!;
}

async function media(dir: string, name: string, spec: MediaSpec = {}): Promise<string> {
  return await makeMedia(join(dir, name), { duration: 2, size: "192x144", ...spec });
}

Deno.test("resize: WxH is exact, presets keep the aspect, odd sizes are refused", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const landscape = await media(dir.path, "land.mp4", { size: "320x240" });
  const portrait = await media(dir.path, "port.mp4", { size: "240x320" });
  const rotated = join(dir.path, "rotated.mp4");
  await ffmpeg(["-i", landscape, "-c", "copy", "-metadata:s:v:0", "rotate=90", rotated]);

  await t.step("WxH gives exactly that frame", async () => {
    const out = join(dir.path, "exact.mp4");
    await job(srv, landscape, out, { op: "resize", resolution: "256x144" });
    const info = await probeFile(out);
    assert.equal(info.video?.width, 256);
    assert.equal(info.video?.height, 144);
    assert.equal(info.audio?.codec, "aac");
  });
  const presets: [string, string, number, number][] = [
    [landscape, "144p", 192, 144],
    [landscape, "480p", 640, 480],
    [portrait, "144p", 144, 192],
    [rotated, "144p", 144, 192],
  ];
  for (const [input, preset, width, height] of presets) {
    await t.step(`${preset} on ${input.split("/").pop()} is ${width}x${height}`, async () => {
      const out = join(dir.path, `preset-${preset}.mp4`);
      await Deno.remove(out).catch(() => {});
      await job(srv, input, out, { op: "resize", resolution: preset });
      const info = await probeFile(out);
      assert.equal(info.video?.width, width);
      assert.equal(info.video?.height, height);
      assert.equal(info.video?.rotation, 0);
    });
  }
  await t.step(
    "the size an H.264 MP4 already has returns it unchanged; a rotated one is not",
    async () => {
      const same = join(dir.path, "same.mp4");
      const result = await job(srv, landscape, same, { op: "resize", resolution: "320x240" });
      assert.equal(result.stats.unchanged, true);
      assert.deepEqual(await Deno.readFile(same), await Deno.readFile(landscape));
      const turned = join(dir.path, "turned.mp4");
      const redone = await job(srv, rotated, turned, { op: "resize", resolution: "320x240" });
      assert.equal(redone.stats.unchanged, undefined);
      assert.equal((await probeFile(turned)).video?.rotation, 0);
    },
  );
  await t.step("odd and out-of-range sizes are BAD_REQUEST before upload", async () => {
    const odd = await jobError(srv, landscape, { op: "resize", resolution: "201x151" });
    assert.equal(odd.code, "BAD_REQUEST");
    assert.match(odd.solution, /202x152/);
    for (const resolution of ["99999x2", "320x240,drawbox", "big", 720]) {
      assert.equal(
        (await jobError(srv, landscape, { op: "resize", resolution })).code,
        "BAD_REQUEST",
      );
    }
  });
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

Deno.test("aspect: pad, crop and stretch give the requested display aspect", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const inputs = {
    landscape: await media(dir.path, "land.mp4", { size: "320x240" }),
    portrait: await media(dir.path, "port.mp4", { size: "180x320" }),
  };
  for (const [shape, input] of Object.entries(inputs)) {
    for (const mode of ["pad", "crop", "stretch"]) {
      for (const [aspect, ratio] of [["16:9", 16 / 9], ["1:1", 1], ["9:16", 9 / 16]] as const) {
        await t.step(`${mode} ${shape} to ${aspect}`, async () => {
          const out = join(dir.path, `${shape}-${mode}-${aspect.replace(":", "x")}.mp4`);
          await job(srv, input, out, { op: "aspect", aspect, mode });
          const info = await probeFile(out);
          const got = displayAspect(info);
          assert.ok(Math.abs(got / ratio - 1) < 0.01, `DAR ${got} vs ${ratio}`);
          assert.equal(info.video?.sampleAspect ?? 1, 1);
        });
      }
    }
  }
  await t.step("bad aspect arguments are BAD_REQUEST", async () => {
    for (const args of [{ aspect: "16/9" }, { aspect: "0:9" }, { aspect: "16:9", mode: "zoom" }]) {
      const error = await jobError(srv, inputs.landscape, { op: "aspect", ...args });
      assert.equal(error.code, "BAD_REQUEST");
    }
  });
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

Deno.test("clip: GIF and WEBM last end - start within one frame", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await media(dir.path, "source.mp4", { duration: 6, size: "320x240" });
  await t.step("gif from 1 to 3.5 s", async () => {
    const out = join(dir.path, "clip.gif");
    await job(srv, input, out, { op: "clip", start: 1, end: 3.5, format: "gif" });
    const info = await probeFile(out);
    assert.equal(info.video?.codec, "gif");
    assert.ok(Math.abs(info.duration - 2.5) <= 1 / 15 + 0.001, `duration ${info.duration}`);
  });
  await t.step("webm from 00:00:02 to 00:04.5", async () => {
    const out = join(dir.path, "clip.webm");
    await job(srv, input, out, { op: "clip", start: "00:00:02", end: "00:04.5", format: "webm" });
    const info = await probeFile(out);
    assert.equal(info.formatName, "matroska,webm");
    assert.equal(info.video?.codec, "vp9");
    assert.equal(info.audio?.codec, "opus");
    assert.ok(Math.abs(info.duration - 2.5) <= 1 / 25 + 0.001, `duration ${info.duration}`);
  });
  await t.step("a range past the end names the real duration", async () => {
    const error = await jobError(srv, input, { op: "clip", start: 4, end: 9, format: "webm" });
    assert.equal(error.code, "BAD_REQUEST");
    assert.match(error.solution, /6\.0\d*/);
  });
  await t.step("inverted, negative and malformed ranges are refused", async () => {
    const bad = [
      { start: 3, end: 2, format: "gif" },
      { start: 2, end: 2, format: "webm" },
      { start: -1, end: 2, format: "gif" },
      { start: "1:2:3:4", end: 5, format: "gif" },
      { start: 1, end: 2, format: "avi" },
    ];
    for (const args of bad) {
      assert.equal((await jobError(srv, input, { op: "clip", ...args })).code, "BAD_REQUEST");
    }
  });
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

Deno.test("compress: smaller on a typical source, never larger on an efficient one", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer();
  await t.step("a high-bitrate camera-like source shrinks", async () => {
    const input = await media(dir.path, "fat.mp4", {
      size: "320x240",
      codecArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "8", "-c:a", "aac"],
    });
    const out = join(dir.path, "fat-small.mp4");
    const result = await job(srv, input, out, { op: "compress" });
    const { size } = await Deno.stat(input);
    assert.ok(result.size < size * 0.7, `${result.size} vs ${size}`);
    assert.equal(result.stats.kept_input, false);
  });
  await t.step("an already tiny source comes back no larger", async () => {
    const input = await media(dir.path, "tiny.mp4", {
      size: "64x48",
      audio: false,
      codecArgs: ["-c:v", "libx264", "-preset", "veryslow", "-crf", "45"],
    });
    const out = join(dir.path, "tiny-out.mp4");
    const result = await job(srv, input, out, { op: "compress" });
    assert.ok(result.size <= (await Deno.stat(input)).size);
    assert.equal((await probeFile(out)).video?.width, 64);
  });
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

Deno.test("every op works on inputs in eight containers, with and without audio", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const ops: Record<string, unknown>[] = [
    { op: "compress", quality: "small" },
    { op: "resize", resolution: "160x120" },
    { op: "aspect", aspect: "1:1", mode: "crop" },
    { op: "audio" },
    { op: "clip", start: 0.5, end: 1.5, format: "gif" },
    { op: "clip", start: 0.5, end: 1.5, format: "webm" },
  ];
  const inputs = Object.entries(CONTAINERS).map(([ext, codecArgs]) => ({
    ext,
    codecArgs,
    audio: true,
  }));
  inputs.push({ ext: "mkv", codecArgs: H264, audio: false });
  for (const { ext, codecArgs, audio } of inputs) {
    const name = `in-${ext}${audio ? "" : "-silent"}.${ext}`;
    const input = await media(dir.path, name, { codecArgs, audio, duration: 1.6, size: "160x120" });
    await t.step(name, async () => {
      for (const request of ops) {
        const out = join(dir.path, `${name}-${request.op}-${request.format ?? ""}.out`);
        if (request.op === "audio" && !audio) {
          assert.equal((await jobError(srv, input, request)).code, "NO_AUDIO");
          continue;
        }
        const result = await job(srv, input, out, request);
        const info = await probeFile(out);
        const label = `${name} ${JSON.stringify(request)}`;
        if (request.op === "audio") assert.equal(info.audio?.codec, "mp3", label);
        else assert.ok(info.video, label);
        if (request.format) assert.equal(result.mediaType, request.format, label);
        await Deno.remove(out);
      }
    });
  }
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

Deno.test("with --jobs 1 a second IP's job queues at position 1, then runs", async () => {
  await using dir = await tempDir();
  await using srv = await startServer({ jobs: 1 });
  const long = await makeMedia(join(dir.path, "long.mkv"), {
    video: false,
    duration: 900,
    codecArgs: ["-c:a", "flac"],
  });
  const short = await media(dir.path, "short.mp4");
  const longBytes = await Deno.readFile(long);
  using first = await RawClient.open(srv.port, "127.0.0.5");
  await first.sendHead({ op: "audio" }, "mkv", longBytes.length);
  await first.send(longBytes);
  assert.equal((await first.nextFrame())?.json.queue_position, 0);

  const shortBytes = await Deno.readFile(short);
  using second = await RawClient.open(srv.port, "127.0.0.6");
  await second.sendHead({ op: "audio" }, "mp4", shortBytes.length);
  await second.send(shortBytes);
  const accepted = await second.nextFrame();
  assert.equal(accepted?.json.queue_position, 1);
  await second.sendHead({ op: "status" });
  const status = await second.nextFrame();
  assert.equal(status?.json.state, "queued");
  assert.equal(status?.json.queue_position, 1);

  await first.sendHead({ op: "cancel" });
  assert.equal((await first.nextFrame())?.json.code, "CANCELLED");
  const result = await second.nextFrame();
  assert.equal(result?.json.type, "result");
  await second.reader.copyPayload(result!.header.payloadSize, () => {});
  assert.ok(await eventually(async () => (await ffmpegChildren()).length === 0));
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

Deno.test("cancelling a queued job frees its place and files at once", async () => {
  await using dir = await tempDir();
  await using srv = await startServer({ jobs: 1 });
  const long = await Deno.readFile(
    await makeMedia(join(dir.path, "long.mkv"), {
      video: false,
      duration: 900,
      codecArgs: ["-c:a", "flac"],
    }),
  );
  using first = await RawClient.open(srv.port, "127.0.0.7");
  await first.sendHead({ op: "audio" }, "mkv", long.length);
  await first.send(long);
  await first.nextFrame();
  using second = await RawClient.open(srv.port, "127.0.0.8");
  await second.sendHead({ op: "audio" }, "mkv", long.length);
  await second.send(long);
  assert.equal((await second.nextFrame())?.json.queue_position, 1);
  await second.sendHead({ op: "cancel" });
  assert.equal((await second.nextFrame())?.json.code, "CANCELLED");
  assert.deepEqual(srv.server.queue.size, { running: 1, waiting: 0 });
  first.conn.close();
  assert.ok(await eventually(async () => (await ffmpegChildren()).length === 0, 2000));
  assert.deepEqual(await storageSettles(srv.storageDir, 2000), []);
});
