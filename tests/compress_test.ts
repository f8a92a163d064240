import assert from "node:assert/strict";
import { runJob } from "../src/client/client.ts";
import { packetsFromCsv, packetsFromFramecrc } from "../src/media/compress_search.ts";
import { runForOutput } from "../src/media/ffmpeg.ts";
import { measureSsim } from "../src/media/ssim.ts";
import { measureVmaf } from "../src/media/vmaf.ts";
import {
  ffmpeg,
  join,
  makeDefaultEncodeFlv,
  makeMedia,
  probeFile,
  startServer,
  storageSettles,
  tempDir,
  type TestServer,
  vmafFfmpeg,
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

/** A noisy 3 s camera-like clip that compresses well. */
function noisyClip(dir: string, name = "camera.mp4", seconds = 3) {
  return makeMedia(join(dir, name), {
    duration: seconds,
    size: "320x240",
    codecArgs: [
      ...["-vf", "noise=alls=8:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "10"],
      ...["-c:a", "aac"],
    ],
  });
}

/** The checks every compress result passes: the stats' own account, every frame, the audio. */
async function checkResult(input: string, output: string, stats: Record<string, unknown>) {
  assert.equal(stats.kept_input, false, String(stats.reason));
  assert.equal((stats.probes as unknown[]).length, Number(stats.probe_count));
  assert.ok(Number(stats.score) >= Number(stats.target_score), `${stats.score} < target`);
  assert.equal(await frameCount(output), await frameCount(input));
  const info = await probeFile(output);
  assert.equal(info.video?.codec, stats.codec);
  assert.equal(info.audio?.codec, "aac");
}

Deno.test("compress searches on SSIM where the ffmpeg has no libvmaf", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await noisyClip(dir.path);
  const output = join(dir.path, "camera-small.mp4");
  const result = await compressJob(srv, input, output);
  await checkResult(input, output, result.stats);
  // Debian's ffmpeg has no libvmaf: the search says it scored SSIM, calibrated against VMAF.
  assert.equal(result.stats.metric, "ssim");
  assert.equal(result.stats.libvmaf, false);
  assert.match(String(result.stats.metric_model), /ssim/);
  assert.equal(result.stats.strategy, "sampled");
  assert.ok(["av1", "h264"].includes(String(result.stats.codec)));
  assert.ok(result.size < (await Deno.stat(input)).size / 3);
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

const vmaf = vmafFfmpeg();

Deno.test({
  name: "compress searches on VMAF with an ffmpeg that has libvmaf",
  ignore: vmaf === undefined,
  async fn() {
    await using dir = await tempDir();
    await using srv = await startServer({ vmafFfmpeg: vmaf! });
    const input = await noisyClip(dir.path);
    const output = join(dir.path, "camera-vmaf.mp4");
    const result = await compressJob(srv, input, output);
    await checkResult(input, output, result.stats);
    assert.equal(result.stats.metric, "vmaf");
    assert.equal(result.stats.libvmaf, true);
    assert.match(String(result.stats.metric_model), /vmaf_v0\.6\.1/);
    // VMAF scores run 0..100, SSIM 0..1: the probes carry the metric's own scores.
    assert.ok(Number(result.stats.anchor_score) > 1, String(result.stats.anchor_score));
    assert.deepEqual(await storageSettles(srv.storageDir), []);
  },
});

Deno.test("an ffmpeg without libvmaf is refused as the VMAF scorer, clearly", async () => {
  await assert.rejects(
    () => startServer({ vmafFfmpeg: "ffmpeg" }),
    (err: Error) => /no libvmaf/.test(err.message) && /--vmaf-ffmpeg/.test(err.message),
  );
});

Deno.test("a short clip is probed whole and its probe becomes the result", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await noisyClip(dir.path, "short.mp4", 2);
  const output = join(dir.path, "short-small.mp4");
  const result = await compressJob(srv, input, output);
  await checkResult(input, output, result.stats);
  assert.equal(result.stats.strategy, "whole-clip");
  assert.equal(result.stats.reused_probe, true);
  const [inInfo, outInfo] = [await probeFile(input), await probeFile(output)];
  assert.ok(Math.abs(inInfo.duration - outInfo.duration) < 0.1, `${outInfo.duration}`);
  assert.ok(result.size < (await Deno.stat(input)).size);
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

Deno.test("an upload as small as ffmpeg's default encode is kept after one unscored probe", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await makeDefaultEncodeFlv(dir.path);
  const output = join(dir.path, "default-out.flv");
  const result = await compressJob(srv, input, output, { op: "compress", format: "flv" });
  assert.equal(result.stats.kept_input, true, JSON.stringify(result.stats));
  assert.match(String(result.stats.reason), /default encode would be about as big/);
  // The anchor's probe decided it: no other probe, no final encode, and no score either, since
  // no other codec was compared with it.
  assert.equal(result.stats.probe_count, 1);
  assert.equal(result.stats.anchor_score, undefined);
  assert.equal(result.stats.strategy, "sampled");
  assert.ok(Math.abs(Number(result.stats.input_rate_ratio) - 1) < 0.2);
  assert.deepEqual(await Deno.readFile(output), await Deno.readFile(input));
  assert.deepEqual(await storageSettles(srv.storageDir), []);
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
  assert.equal(result.stats.metric, "ssim");
  assert.ok(ssim >= Number(result.stats.target_score) - 0.005, `${ssim}`);
});

Deno.test("a WebM whose own codecs miss the time budget comes back as H.264 in Matroska", async () => {
  await using dir = await tempDir();
  // 1× ffmpeg's default encode: the samples and the anchor take it all, AV1 gets no probe.
  await using srv = await startServer({ compressBudget: 1 });
  const input = await makeMedia(join(dir.path, "wasteful.webm"), {
    duration: 3,
    codecArgs: [
      ...["-vf", "noise=alls=8:allf=t", "-c:v", "libvpx", "-b:v", "4M", "-deadline", "realtime"],
      ...["-c:a", "libopus"],
    ],
  });
  const output = join(dir.path, "wasteful-small.mkv");
  const result = await compressJob(srv, input, output);
  assert.equal(result.stats.kept_input, false, String(result.stats.reason));
  assert.equal(result.mediaType, "mkv");
  assert.ok(!(result.stats.probes as { codec: string }[]).some((p) => p.codec === "av1"));
  const info = await probeFile(output);
  assert.deepEqual([info.video?.codec, info.audio?.codec], ["h264", "opus"]);
  assert.equal(await frameCount(output), await frameCount(input));
  assert.ok(result.size < (await Deno.stat(input)).size / 2);
});

Deno.test("a scoring pass lists the encode's packets as ffprobe does, SSIM and VMAF", async () => {
  await using dir = await tempDir();
  const reference = await noisyClip(dir.path, "reference.mkv", 2);
  const encodes = [
    ["x264.mkv", "-c:v", "libx264", "-bf", "3", "-g", "12", "-crf", "30"],
    ["av1.mkv", "-c:v", "libsvtav1", "-preset", "12", "-g", "20", "-crf", "40"],
  ];
  for (const [name, ...args] of encodes) {
    const encode = join(dir.path, name!);
    await ffmpeg(["-i", reference, "-an", ...args, encode]);
    // deno-fmt-ignore
    const csv = await runForOutput("ffprobe", ["-v", "error", "-select_streams", "v:0",
      "-show_entries", "packet=size,flags", "-of", "csv=p=0", encode]);
    const expected = packetsFromCsv(csv);
    assert.ok(expected.filter((p) => p.keyframe).length >= 2, name);
    const packetLog = join(dir.path, `${name}.framecrc`);
    await measureSsim(encode, reference, { ...SSIM, packetLog });
    assert.deepEqual(packetsFromFramecrc(await Deno.readTextFile(packetLog)), expected, name);
    if (vmaf) {
      await Deno.remove(packetLog);
      await measureVmaf(encode, reference, { ...SSIM, ffmpeg: vmaf, packetLog });
      assert.deepEqual(packetsFromFramecrc(await Deno.readTextFile(packetLog)), expected, name);
    }
  }
});
