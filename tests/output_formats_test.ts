/**
 * Issue 10, output side: every output format out of `convert`, every stream kept by every video
 * op, 10-bit and colour kept, VFR, A/V offset and rotation kept, metadata stripped on request.
 */
import assert from "node:assert/strict";
import { requestInfo, runJob, ServerError } from "../src/client/client.ts";
import { OUTPUT_FORMATS } from "../src/media/formats.ts";
import { availableEncoders } from "../src/media/encoders.ts";
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

type Json = Record<string, unknown>;

async function job(srv: TestServer, input: string, output: string, request: Json) {
  return await runJob({
    hostname: "127.0.0.1",
    port: srv.port,
    request,
    input,
    output,
    force: true,
  });
}

/** ffprobe's streams, chapters and format, raw, for the fields the probe helper leaves out. */
async function ffprobe(path: string, extra: string[] = []): Promise<Json> {
  const { stdout, success } = await new Deno.Command("ffprobe", {
    // deno-fmt-ignore
    args: ["-v", "error", "-print_format", "json", "-show_streams", "-show_chapters", "-show_format",
      ...extra, path],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  assert.ok(success, `ffprobe cannot read ${path}`);
  return JSON.parse(new TextDecoder().decode(stdout));
}

function streams(json: Json): Json[] {
  return json.streams as Json[];
}

function ofType(json: Json, type: string): Json[] {
  return streams(json).filter((s) => s.codec_type === type);
}

function tag(stream: Json | undefined, name: string): unknown {
  return (stream?.tags as Json | undefined)?.[name];
}

/** A decoded-audio hash: equal hashes mean bit-exact samples. */
async function audioHash(path: string): Promise<string> {
  const { stdout } = await new Deno.Command("ffmpeg", {
    // deno-fmt-ignore
    args: ["-v", "error", "-i", path, "-map", "0:a:0", "-c:a", "pcm_s16le", "-f", "hash", "-hash", "md5", "-"],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(stdout).trim();
}

Deno.test("convert writes every output format this ffmpeg can, read back by ffprobe", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await makeMedia(join(dir.path, "in.mp4"), { duration: 1, size: "160x120" });
  const have = await availableEncoders("ffmpeg");
  for (const format of OUTPUT_FORMATS.values()) {
    const writable = [format.video?.encoder, format.audio?.encoder].every((e) => !e || have.has(e));
    await t.step(format.format, async () => {
      const output = join(dir.path, `out.${format.format}`);
      const request = { op: "convert", format: format.format };
      if (!writable) {
        const err = await job(srv, input, output, request).catch((e) => e);
        assert.ok(err instanceof ServerError && err.code === "BAD_REQUEST", String(err));
        assert.match(err.message, /cannot write/);
        return;
      }
      const result = await job(srv, input, output, request);
      assert.equal(result.mediaType, format.format);
      const json = await ffprobe(result.output);
      const video = ofType(json, "video")[0];
      const audio = ofType(json, "audio")[0];
      if (format.kind === "audio") assert.equal(video, undefined);
      else assert.ok(video, "no video stream");
      if (format.audio) assert.ok(audio, "no audio stream");
      else assert.equal(audio, undefined);
      const codecs = streams(json).map((s) => s.codec_name);
      for (const rule of [format.video, format.audio]) {
        if (rule) {
          assert.ok([rule.codec, ...rule.copy].some((c) => codecs.includes(c)), `${codecs}`);
        }
      }
    });
  }
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

/** An MKV with two audio tracks (eng, jpn), SRT subtitles, two chapters and a font attachment. */
async function multiTrack(dir: string): Promise<string> {
  const srt = join(dir, "subs.srt");
  await Deno.writeTextFile(
    srt,
    "1\n00:00:00,000 --> 00:00:01,000\nHello\n\n2\n00:00:01,000 --> 00:00:02,000\nWorld\n",
  );
  const meta = join(dir, "meta.txt");
  await Deno.writeTextFile(
    meta,
    ";FFMETADATA1\ntitle=Holiday\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1000\ntitle=One\n" +
      "[CHAPTER]\nTIMEBASE=1/1000\nSTART=1000\nEND=2000\ntitle=Two\n",
  );
  const font = join(dir, "font.ttf");
  await Deno.writeTextFile(font, "not really a font");
  const output = join(dir, "multi.mkv");
  // deno-fmt-ignore
  await ffmpeg([
    "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=2",
    "-f", "lavfi", "-i", "sine=f=440:d=2", "-f", "lavfi", "-i", "sine=f=660:d=2",
    "-i", srt, "-i", meta,
    "-map", "0", "-map", "1", "-map", "2", "-map", "3", "-map_metadata", "4", "-map_chapters", "4",
    "-c:v", "libx264", "-preset", "ultrafast", "-c:a:0", "aac", "-c:a:1", "libopus", "-c:s", "srt",
    "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=jpn",
    "-metadata:s:a:1", "title=Japanese", "-metadata:s:s:0", "language=eng",
    "-disposition:a:0", "default", "-disposition:a:1", "0", "-disposition:s:0", "forced",
    "-attach", font, "-metadata:s:t", "mimetype=application/x-truetype-font", output,
  ]);
  return output;
}

function chapterTimes(json: Json): number[] {
  return (json.chapters as Json[]).map((c) => Math.round(Number(c.start_time) * 10) / 10);
}

Deno.test("every video op keeps every audio track, subtitles, chapters and attachments", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await multiTrack(dir.path);
  const ops: Json[] = [
    { op: "convert" },
    { op: "resize", resolution: "96x72" },
    { op: "aspect", aspect: "1:1", mode: "pad" },
    { op: "compress", quality: "small" },
  ];
  for (const base of ops) {
    for (const format of ["mkv", "mp4"]) {
      await t.step(`${base.op} into ${format}`, async () => {
        const output = join(dir.path, `${base.op}.${format}`);
        const result = await job(srv, input, output, { ...base, format });
        const json = await ffprobe(result.output);
        const audio = ofType(json, "audio");
        assert.deepEqual(audio.map((s) => tag(s, "language")), ["eng", "jpn"]);
        assert.equal((audio[0]!.disposition as Json).default, 1);
        assert.equal((audio[1]!.disposition as Json).default, 0);
        const subtitles = ofType(json, "subtitle");
        assert.equal(subtitles.length, 1);
        assert.equal(tag(subtitles[0], "language"), "eng");
        assert.equal(subtitles[0]!.codec_name, format === "mkv" ? "subrip" : "mov_text");
        assert.deepEqual(chapterTimes(json), [0, 1]);
        assert.equal(tag(json.format as Json, "title"), "Holiday");
        const dropped = (result.stats.dropped ?? []) as Json[];
        if (format === "mkv") {
          assert.equal(tag(ofType(json, "attachment")[0], "filename"), "font.ttf");
          assert.equal(tag(audio[1], "title"), "Japanese");
          assert.deepEqual(dropped, []);
        } else {
          // MP4 has no attachments: the font is named as dropped, with the reason.
          assert.deepEqual(dropped.map((d) => [d.type, d.codec]), [["attachment", "ttf"]]);
          assert.match(String(dropped[0]!.reason), /attachments/);
        }
      });
    }
  }
  await t.step("strip_metadata removes the title but keeps languages", async () => {
    const output = join(dir.path, "stripped.mkv");
    const result = await job(srv, input, output, {
      op: "convert",
      format: "mkv",
      strip_metadata: true,
    });
    const json = await ffprobe(result.output);
    assert.equal(tag(json.format as Json, "title"), undefined);
    assert.deepEqual(ofType(json, "audio").map((s) => tag(s, "language")), ["eng", "jpn"]);
    assert.equal(tag(ofType(json, "audio")[1], "title"), undefined);
    assert.equal(tag(ofType(json, "attachment")[0], "filename"), "font.ttf");
  });
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

Deno.test("picture fidelity: 10-bit HLG, VFR, audio offset and rotation survive", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer();
  await t.step("10-bit HLG HEVC compresses to 10-bit with the same colour tags", async () => {
    const input = join(dir.path, "hlg.mp4");
    // deno-fmt-ignore
    await ffmpeg([
      "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
      "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le", "-x265-params", "log-level=error",
      "-color_primaries", "bt2020", "-color_trc", "arib-std-b67", "-colorspace", "bt2020nc", input,
    ]);
    for (const request of [{ op: "compress" }, { op: "resize", resolution: "160x120" }]) {
      const result = await job(srv, input, join(dir.path, `hlg-${request.op}.mp4`), request);
      const video = ofType(await ffprobe(result.output), "video")[0]!;
      assert.equal(video.pix_fmt, "yuv420p10le", `${request.op}: ${video.pix_fmt}`);
      assert.equal(video.color_primaries, "bt2020");
      assert.equal(video.color_transfer, "arib-std-b67");
      assert.equal(video.color_space, "bt2020nc");
    }
  });
  await t.step(
    "HDR10 mastering-display and content-light metadata survive AV1 and HEVC",
    async () => {
      const input = join(dir.path, "pq.mp4");
      // deno-fmt-ignore
      await ffmpeg([
      "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1",
      "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
      "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc",
      "-x265-params", "log-level=error:hdr10=1:master-display=G(13250,34500)B(7500,3000)" +
        "R(34000,16000)WP(15635,16450)L(10000000,1):max-cll=1000,400",
      input,
    ]);
      for (const codec of ["av1", "hevc"]) {
        const result = await job(srv, input, join(dir.path, `pq-${codec}.mkv`), {
          op: "compress",
          codec,
          format: "mkv",
        });
        const frame = await ffprobe(result.output, ["-read_intervals", "%+#1", "-show_frames"]);
        const sideData = ((frame.frames as Json[])[0]!.side_data_list ?? []) as Json[];
        const mastering = sideData.find((d) => d.side_data_type === "Mastering display metadata");
        const light = sideData.find((d) => d.side_data_type === "Content light level metadata");
        assert.ok(mastering, `${codec}: no mastering display metadata`);
        const [num, den] = String(mastering.max_luminance).split("/").map(Number);
        assert.equal(num! / den!, 1000, codec);
        assert.equal(light?.max_content, 1000, codec);
        assert.equal(light?.max_average, 400, codec);
      }
    },
  );
  await t.step("a variable-frame-rate file keeps its frame count", async () => {
    const input = join(dir.path, "vfr.mkv");
    // 25 frames in the first second, then 5 a second: 35 frames over 3 s.
    // deno-fmt-ignore
    await ffmpeg([
      "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=3,setpts='if(lt(N,25),N/25,1+(N-25)/5)/TB'",
      "-fps_mode", "passthrough", "-c:v", "libx264", "-preset", "ultrafast", input,
    ]);
    const frames = async (path: string) =>
      Number(ofType(await ffprobe(path, ["-count_frames"]), "video")[0]!.nb_read_frames);
    const expected = await frames(input);
    for (const request of [{ op: "compress" }, { op: "resize", resolution: "96x72" }]) {
      const result = await job(srv, input, join(dir.path, `vfr-${request.op}.mp4`), {
        ...request,
        format: "mp4",
      });
      assert.equal(await frames(result.output), expected, request.op);
    }
  });
  await t.step("audio that starts 0.5 s late still does", async () => {
    const input = join(dir.path, "late.mkv");
    // deno-fmt-ignore
    await ffmpeg([
      "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=2",
      "-itsoffset", "0.5", "-f", "lavfi", "-i", "sine=d=1.5",
      "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "libopus", input,
    ]);
    const offset = async (path: string) => {
      const json = await ffprobe(path);
      const start = (type: string) => Number(ofType(json, type)[0]!.start_time);
      return start("audio") - start("video");
    };
    const before = await offset(input);
    for (
      const request of [{ op: "compress", format: "mkv" }, {
        op: "resize",
        resolution: "96x72",
        format: "mp4",
      }]
    ) {
      const result = await job(
        srv,
        input,
        join(dir.path, `late-${request.op}.${request.format}`),
        request,
      );
      const after = await offset(result.output);
      assert.ok(Math.abs(after - before) <= 0.04 + 0.025, `${request.op}: ${before} → ${after}`);
    }
  });
  await t.step("a rotated phone clip comes out upright from compress and convert", async () => {
    const plain = await makeMedia(join(dir.path, "plain.mp4"), { duration: 1, size: "192x144" });
    const rotated = join(dir.path, "rotated.mp4");
    await ffmpeg(["-i", plain, "-c", "copy", "-metadata:s:v:0", "rotate=90", rotated]);
    for (const request of [{ op: "compress", format: "mkv" }, { op: "convert", format: "mkv" }]) {
      const result = await job(srv, rotated, join(dir.path, `upright-${request.op}.mkv`), request);
      const info = await probeFile(result.output);
      assert.equal(info.video?.rotation, 0);
      assert.deepEqual([info.video?.width, info.video?.height], [144, 192], request.op);
    }
  });
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

Deno.test("audio keeps lossless lossless and writes the format asked for", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await makeMedia(join(dir.path, "pcm.mkv"), {
    duration: 1,
    size: "96x64",
    codecArgs: ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "pcm_s16le"],
  });
  const reference = await audioHash(input);
  for (const format of ["wav", "flac", "aiff"]) {
    await t.step(`${format} of a PCM track is bit-exact`, async () => {
      const result = await job(srv, input, join(dir.path, `out.${format}`), {
        op: "audio",
        format,
      });
      assert.equal(result.mediaType, format);
      assert.equal(await audioHash(result.output), reference);
    });
  }
  await t.step("an unknown format is BAD_REQUEST naming the formats", async () => {
    const err = await job(srv, input, join(dir.path, "x.xyz"), { op: "audio", format: "mp4" })
      .catch((e) => e);
    assert.ok(err instanceof ServerError && err.code === "BAD_REQUEST");
    assert.match(err.solution, /mp3, m4a/);
  });
});

Deno.test("resize keeps cover art and clip writes MP4, APNG and WebP", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const plain = await makeMedia(join(dir.path, "plain.mp4"), { duration: 2, size: "160x120" });
  await t.step("cover art survives a resize", async () => {
    const cover = join(dir.path, "cover.png");
    await ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1", cover]);
    const input = join(dir.path, "with-cover.mp4");
    // deno-fmt-ignore
    await ffmpeg(["-i", plain, "-i", cover, "-map", "0", "-map", "1", "-c", "copy",
      "-disposition:v:1", "attached_pic", input]);
    const result = await job(srv, input, join(dir.path, "cover-out.mp4"), {
      op: "resize",
      resolution: "96x72",
    });
    const videos = ofType(await ffprobe(result.output), "video");
    assert.equal(videos.length, 2);
    assert.deepEqual([videos[0]!.width, videos[0]!.height], [96, 72]);
    assert.equal((videos[1]!.disposition as Json).attached_pic, 1);
  });
  for (const format of ["mp4", "apng", "webp"]) {
    await t.step(`clip to ${format}`, async () => {
      const result = await job(srv, plain, join(dir.path, `clip.${format}`), {
        op: "clip",
        start: 0.5,
        end: 1.5,
        format,
      });
      assert.equal(result.mediaType, format);
      const video = ofType(await ffprobe(result.output), "video")[0]!;
      assert.equal(video.codec_name, OUTPUT_FORMATS.get(format)!.video!.codec);
    });
  }
});

Deno.test("the info op lists operations, formats and limits", async () => {
  await using srv = await startServer();
  const info = await requestInfo({ hostname: "127.0.0.1", port: srv.port });
  assert.equal(info.type, "info");
  const operations = info.operations as Record<string, { formats: string[] }>;
  assert.deepEqual(Object.keys(operations).sort(), [
    "aspect",
    "audio",
    "clip",
    "compress",
    "convert",
    "resize",
  ]);
  assert.ok(operations.convert!.formats.includes("mxf"));
  assert.ok(operations.audio!.formats.includes("flac"));
  const outputs = (info.output_formats as Json[]).map((f) => f.format);
  const have = await availableEncoders("ffmpeg");
  assert.equal(outputs.includes("amr"), have.has("libopencore_amrnb"));
  assert.ok((info.input_formats as string[]).includes("mkv"));
  assert.equal(typeof (info.limits as Json).max_upload_bytes, "number");
});
