import assert from "node:assert/strict";
import { runJob } from "../src/client/client.ts";
import { measureSsim } from "../src/media/ssim.ts";
import {
  ffmpeg,
  join,
  makeMedia,
  probeFile,
  startServer,
  storageSettles,
  tempDir,
  type TestServer,
} from "./_helpers.ts";

async function frameCount(path: string): Promise<number> {
  const { stdout } = await new Deno.Command("ffprobe", {
    args: [
      "-v",
      "error",
      "-count_frames",
      "-select_streams",
      "v:0",
      "-show_entries",
      "stream=nb_read_frames",
      "-of",
      "csv=p=0",
      path,
    ],
    stdin: "null",
    stdout: "piped",
  }).output();
  return Number(new TextDecoder().decode(stdout).trim());
}

const SSIM = { ffmpeg: "ffmpeg", frameRate: 25, width: 320, height: 240 };

/** Runs a compress job on the test server. */
function compressJob(
  srv: TestServer,
  input: string,
  output: string,
  request: Record<string, unknown> = { op: "compress" },
) {
  return runJob({ hostname: "127.0.0.1", port: srv.port, request, input, output });
}

Deno.test("SSIM alignment scores lossless copies of tricky files at 0.99 or more", async (t) => {
  await using dir = await tempDir();
  await t.step("AVI without timestamps (packed B-frames), copied to MP4", async () => {
    const avi = await makeMedia(join(dir.path, "old.avi"), {
      audio: false,
      codecArgs: ["-c:v", "mpeg4", "-bf", "2", "-q:v", "3"],
    });
    const copy = join(dir.path, "avi-copy.mp4");
    await ffmpeg(["-i", avi, "-c:v", "libx264", "-qp", "0", "-preset", "ultrafast", copy]);
    assert.ok(await measureSsim(copy, avi, SSIM) >= 0.99);
  });
  await t.step("B-frame MP4, copied losslessly to MKV", async () => {
    const mp4 = await makeMedia(join(dir.path, "bframes.mp4"), {
      audio: false,
      codecArgs: ["-c:v", "libx264", "-preset", "fast", "-bf", "3", "-crf", "20"],
    });
    const copy = join(dir.path, "bframes-copy.mkv");
    await ffmpeg(["-i", mp4, "-c:v", "libx264", "-qp", "0", "-preset", "ultrafast", copy]);
    assert.ok(await measureSsim(copy, mp4, SSIM) >= 0.99);
  });
  await t.step("a CFR output with duplicated frames still lines up", async () => {
    const vfr = join(dir.path, "vfr.mkv");
    await ffmpeg([
      "-f",
      "lavfi",
      "-i",
      "testsrc2=size=320x240:rate=25:duration=2",
      "-vf",
      "select='not(eq(mod(n\\,25)\\,12))'",
      "-fps_mode",
      "vfr",
      "-c:v",
      "libx264",
      "-qp",
      "0",
      vfr,
    ]);
    const cfr = join(dir.path, "cfr.mp4");
    await ffmpeg(["-i", vfr, "-r", "25", "-fps_mode", "cfr", "-c:v", "libx264", "-qp", "0", cfr]);
    assert.ok(await frameCount(cfr) > await frameCount(vfr), "the CFR copy must duplicate frames");
    assert.ok(await measureSsim(cfr, vfr, SSIM) >= 0.99);
  });
  await t.step("a different picture scores clearly lower", async () => {
    const other = join(dir.path, "other.mp4");
    await ffmpeg([
      "-f",
      "lavfi",
      "-i",
      "testsrc=size=320x240:rate=25:duration=2",
      "-c:v",
      "libx264",
      other,
    ]);
    assert.ok(await measureSsim(other, join(dir.path, "bframes.mp4"), SSIM) < 0.9);
  });
});

Deno.test("compress picks its setting by measurement and keeps every frame", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await makeMedia(join(dir.path, "camera.mp4"), {
    duration: 3,
    size: "320x240",
    codecArgs: [
      "-vf",
      "noise=alls=8:allf=t",
      "-c:v",
      "libx264",
      "-preset",
      "ultrafast",
      "-crf",
      "10",
      "-c:a",
      "aac",
    ],
  });
  const output = join(dir.path, "camera-small.mp4");
  const result = await compressJob(srv, input, output);
  const stats = result.stats as Record<string, number & unknown[]>;
  assert.equal(result.stats.kept_input, false);
  assert.ok(Number(stats.probe_count) >= 2, `probes: ${stats.probe_count}`);
  assert.equal((stats.probes as unknown[]).length, Number(stats.probe_count));
  assert.ok(
    Number(stats.ssim) >= Number(stats.target_ssim),
    `${stats.ssim} < ${stats.target_ssim}`,
  );
  assert.ok(["av1", "h264"].includes(String(result.stats.codec)));
  // Debian's ffmpeg has no libvmaf: the search says it scored SSIM.
  assert.equal(result.stats.metric, "ssim");
  assert.equal(result.stats.libvmaf, false);
  assert.equal(await frameCount(output), await frameCount(input));
  const info = await probeFile(output);
  assert.equal(info.video?.codec, result.stats.codec);
  assert.equal(info.audio?.codec, "aac");
  assert.ok(result.size < (await Deno.stat(input)).size / 3);
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

Deno.test("compress honours a codec override and re-encodes wasteful audio", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await makeMedia(join(dir.path, "pcm.mkv"), {
    size: "320x240",
    codecArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", "-c:a", "pcm_s16le"],
  });
  const output = join(dir.path, "pcm-small.mkv");
  const result = await compressJob(srv, input, output, {
    op: "compress",
    codec: "h264",
    quality: "small",
  });
  const info = await probeFile(output);
  assert.equal(result.mediaType, "mkv");
  assert.equal(info.video?.codec, "h264");
  assert.equal(info.audio?.codec, "opus");
});

Deno.test("compress returns the input itself when nothing beats it", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await makeMedia(join(dir.path, "tiny.mp4"), {
    size: "96x64",
    audio: false,
    codecArgs: ["-c:v", "libx264", "-preset", "veryslow", "-crf", "40"],
  });
  const output = join(dir.path, "tiny-out.mp4");
  const result = await compressJob(srv, input, output);
  assert.ok(result.size <= (await Deno.stat(input)).size);
  if (result.stats.kept_input) {
    assert.deepEqual(await Deno.readFile(output), await Deno.readFile(input));
  }
});

Deno.test("compress crops an odd-sided video to even sides instead of failing", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = join(dir.path, "odd.mkv");
  // deno-fmt-ignore
  await ffmpeg(["-f", "lavfi", "-i", "testsrc=size=319x239:rate=25:duration=2",
    "-pix_fmt", "rgb24", "-c:v", "ffv1", input]);
  const output = join(dir.path, "odd-small.mkv");
  const result = await compressJob(srv, input, output);
  assert.equal(result.stats.kept_input, false, String(result.stats.reason));
  const video = (await probeFile(output)).video!;
  assert.deepEqual([video.width, video.height], [318, 238]);
  assert.equal(await frameCount(output), await frameCount(input));
  // Scored on the same crop, the encode is as good as the search measured.
  const ssim = await measureSsim(output, input, {
    ffmpeg: "ffmpeg",
    frameRate: 25,
    width: 319,
    height: 239,
  });
  assert.ok(ssim >= Number(result.stats.target_ssim) - 0.005, `${ssim}`);
});
