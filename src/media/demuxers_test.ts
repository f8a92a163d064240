import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ALLOWED_DEMUXERS,
  DENIED_DEMUXERS,
  FORMAT_WHITELIST,
  isUnclassified,
  listDemuxers,
  matchesWhitelist,
  parseDemuxerList,
  shortName,
} from "./demuxers.ts";
import {
  DEMUXER_EXTENSIONS,
  INPUT_EXTENSIONS,
  INPUT_MIME_TYPES,
  normalizeMediaType,
} from "../protocol/media_type.ts";
import { MmpError } from "../protocol/errors.ts";

/** The ffmpeg under test: env `MMP_FFMPEG` (to check another build by hand), else PATH's. */
const FFMPEG = Deno.env.get("MMP_FFMPEG") ?? "ffmpeg";

Deno.test("every demuxer the installed ffmpeg reports is allowed or denied", async () => {
  const reported = await listDemuxers(FFMPEG);
  assert.ok(reported.length > 100, `only ${reported.length} demuxers read from ${FFMPEG}`);
  const unclassified = reported.filter(isUnclassified);
  assert.deepEqual(
    unclassified,
    [],
    `${FFMPEG} reads formats src/media/demuxers.ts does not classify: ${unclassified.join(" ")}`,
  );
});

Deno.test("the demuxer table: disjoint lists, a reason for every denial, no duplicates", () => {
  assert.equal(new Set(ALLOWED_DEMUXERS).size, ALLOWED_DEMUXERS.length);
  for (const name of ALLOWED_DEMUXERS) assert.ok(!DENIED_DEMUXERS.has(name), name);
  for (const [name, reason] of DENIED_DEMUXERS) assert.ok(reason.length > 10, name);
  // deno-fmt-ignore
  const required = [
    "concat", "dash", "hls", "imf", "webm_dash_manifest", "image2", "ffmetadata", "sdp", "rtp",
    "rtsp", "sap", "lavfi", "avisynth", "vapoursynth", "sbg", "video4linux2,v4l2", "x11grab",
    "alsa", "pulse", "oss", "jack", "fbdev", "kmsgrab", "openal", "iec61883", "dv1394",
    "decklink", "libcdio", "libdc1394", "png_pipe", "jpeg_pipe", "webp_pipe", "image2pipe", "srt",
    "ass", "webvtt", "subviewer", "microdvd", "mpl2", "jacosub", "lrc", "sami", "realtext", "stl",
    "pjs", "vplayer", "aqtitle", "scc", "tedcaptions", "tty",
  ];
  for (const name of required) assert.ok(DENIED_DEMUXERS.has(name), name);
  for (const name of ["apng", "gif", "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "mpegts"]) {
    assert.ok(ALLOWED_DEMUXERS.includes(name), name);
  }
});

Deno.test("the whitelist passes every allowed demuxer and no denied one, as ffmpeg matches", () => {
  // av_match_list: any name of the demuxer's comma list equal to any name on the whitelist.
  assert.ok(matchesWhitelist("mov,mp4,m4a,3gp,3g2,mj2", "avi,mov"));
  assert.ok(matchesWhitelist("matroska,webm", "webm"));
  assert.ok(!matchesWhitelist("gif_pipe", "gif,png"));
  assert.ok(!matchesWhitelist("mp3", "mp3float,mp"));
  for (const name of ALLOWED_DEMUXERS) assert.ok(matchesWhitelist(name), name);
  for (const name of DENIED_DEMUXERS.keys()) assert.ok(!matchesWhitelist(name), name);
  assert.ok(!FORMAT_WHITELIST.includes(" "));
});

Deno.test("ffmpeg lets allowed formats through the whitelist, not denied ones", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "mmp-demuxers-" });
  try {
    const run = async (args: string[]) => {
      const { success, stderr } = await new Deno.Command(FFMPEG, {
        args: ["-hide_banner", "-nostdin", "-loglevel", "error", "-y", ...args],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).output();
      return { success, log: new TextDecoder().decode(stderr) };
    };
    const read = (path: string) =>
      run(["-format_whitelist", FORMAT_WHITELIST, "-i", `file:${path}`, "-f", "null", "-"]);
    const make = async (name: string, output: string[]) => {
      const path = join(dir, name);
      const made = await run(["-f", "lavfi", "-i", "testsrc2=size=64x48:duration=0.2", ...output]);
      assert.ok(made.success, made.log);
      return path;
    };
    await t.step("MOV/MP4 and Matroska pass by their short names", async () => {
      for (const name of ["clip.mp4", "clip.mkv"]) {
        const result = await read(await make(name, ["-c:v", "mjpeg", join(dir, name)]));
        assert.ok(result.success, result.log);
      }
    });
    await t.step("a PNG is refused whatever its extension says", async () => {
      const png = await make("frame.png", ["-frames:v", "1", join(dir, "frame.png")]);
      const disguised = join(dir, "frame.mp4");
      await Deno.copyFile(png, disguised);
      for (const path of [png, disguised]) {
        const result = await read(path);
        assert.ok(!result.success);
        assert.match(result.log, /not on whitelist/);
      }
    });
    await t.step("an ffconcat list sent as .mkv is refused", async () => {
      const list = join(dir, "list.mkv");
      await Deno.writeTextFile(list, "ffconcat version 1.0\nfile 'clip.mkv'\n");
      const result = await read(list);
      assert.ok(!result.success);
      assert.match(result.log, /not on whitelist/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseDemuxerList reads ffmpeg 5.x and 7.x layouts", () => {
  const v5 = "File formats:\n D. = Demuxing supported\n .E = Muxing supported\n --\n" +
    " D  3dostr          3DO STR\n D  matroska,webm   Matroska / WebM\n";
  const v7 = "Formats:\n D.. = Demuxing supported\n .E. = Muxing supported\n" +
    " ..d = Is a device\n ---\n D   3dostr          3DO STR\n" +
    " D d alsa            ALSA audio input\n" +
    " D d video4linux2,v4l2 Video4Linux2 device grab\n";
  assert.deepEqual(parseDemuxerList(v5), ["3dostr", "matroska,webm"]);
  assert.deepEqual(parseDemuxerList(v7), ["3dostr", "alsa", "video4linux2,v4l2"]);
  assert.throws(() => parseDemuxerList("nonsense"));
});

Deno.test("the extension data names only allowed demuxers, with plain extensions", () => {
  const allowedShortNames = new Set(ALLOWED_DEMUXERS.map(shortName));
  for (const [demuxer, extensions] of Object.entries(DEMUXER_EXTENSIONS)) {
    assert.ok(allowedShortNames.has(demuxer), `${demuxer} has extensions but is not allowed`);
    for (const extension of extensions.split(" ")) {
      assert.match(extension, /^[a-z0-9_]{1,12}$/, `${demuxer}: "${extension}"`);
    }
  }
  for (const [mime, extension] of INPUT_MIME_TYPES) {
    assert.ok(INPUT_EXTENSIONS.has(extension), `${mime} stands for ${extension}, not accepted`);
    assert.equal(mime, mime.toLowerCase());
  }
});

/** Whether the media type is refused with `UNSUPPORTED_MEDIA`. */
function refused(mediaType: string): boolean {
  try {
    normalizeMediaType(mediaType);
    return false;
  } catch (err) {
    assert.ok(err instanceof MmpError && err.code === "UNSUPPORTED_MEDIA", String(err));
    return true;
  }
}

Deno.test("media types: extensions of allowed formats pass, those of denied kinds do not", () => {
  // deno-fmt-ignore
  const accepted = [
    "rm", "rmvb", "nut", "ivf", "y4m", "apng", "mjpg", "mjpeg", "wtv", "asf", "wmv", "wma", "dv",
    "mxf", "3gp", "3g2", "flv", "ts", "vob", "ogv", "webm", "mkv", "m2ts", "mts", "wav", "flac",
    "m4a", "opus", "ac3", "aiff", "aif", "amr", "mpg", "mpeg", "avi", "mov", "mp4", "m4v", "mka",
    "caf", "au", "w64", "aac", "mp3", "ogg", "oga", "spx", "wv", "tta", "ape", "mpc", "dts",
    "eac3", "thd", "h264", "264", "hevc", "265", "m2v", "obu", "nsv", "smk", "bik", "roq", "xmv",
    "gif", "swf",
  ];
  for (const extension of accepted) assert.equal(normalizeMediaType(extension), extension);
  // deno-fmt-ignore
  const deniedOnly = [
    "m3u8", "m3u", "mpd", "ffconcat", "ffmeta", "sdp", "avs", "vpy", "sbg", "srt", "ass", "ssa",
    "vtt", "sub", "idx", "sup", "lrc", "smi", "txt", "png", "jpg", "jpeg", "bmp", "tif", "tiff",
    "webp", "ico", "xml", "html", "exe", "sh",
  ];
  for (const extension of deniedOnly) assert.ok(refused(extension), extension);
});

Deno.test("media types: extension, dotted, or MIME with parameters; anything else refused", () => {
  assert.equal(normalizeMediaType("mp4"), "mp4");
  assert.equal(normalizeMediaType(".MP4"), "mp4");
  assert.equal(normalizeMediaType("video/mp4"), "mp4");
  assert.equal(normalizeMediaType('video/mp4; codecs="avc1.42E01E"'), "mp4");
  assert.equal(normalizeMediaType("VIDEO/QUICKTIME"), "mov");
  assert.equal(normalizeMediaType("video/x-matroska"), "mkv");
  assert.equal(normalizeMediaType("application/vnd.rn-realmedia"), "rm");
  assert.equal(normalizeMediaType("image/apng"), "apng");
  // deno-fmt-ignore
  const bad = [
    "mp4/../../x", "..", ".", "mp4\0.sh", "", " ", "m".repeat(255), "-f lavfi", "lavfi",
    "image/png", "application/x-mpegurl", "text/plain", "constructor", "__proto__", "toString",
  ];
  for (const mediaType of bad) assert.ok(refused(mediaType), JSON.stringify(mediaType));
});
