import assert from "node:assert/strict";
import { OUTPUT_FORMATS } from "./formats.ts";
import type { MediaInfo, StreamInfo } from "./probe.ts";
import { mapStreams } from "./streams.ts";

function film(...extra: StreamInfo[]): MediaInfo {
  const video: StreamInfo = { index: 0, type: "video", codec: "h264", width: 320, height: 240 };
  return {
    formatName: "matroska,webm",
    duration: 2,
    size: 1,
    bitRate: 1,
    streams: [video, ...extra],
    video,
    chapters: 2,
  };
}

const encode = { codecArgs: ["-c:v", "libx264"] };

Deno.test("bitmap subtitles that a container cannot hold are dropped and named", () => {
  const pgs: StreamInfo = { index: 1, type: "subtitle", codec: "hdmv_pgs_subtitle" };
  const srt: StreamInfo = { index: 2, type: "subtitle", codec: "subrip", language: "eng" };
  const mp4 = mapStreams(film(pgs, srt), { format: OUTPUT_FORMATS.get("mp4")!, mainVideo: encode });
  assert.deepEqual(mp4.dropped.map((d) => [d.stream, d.codec]), [[1, "hdmv_pgs_subtitle"]]);
  assert.match(mp4.dropped[0]!.reason, /bitmap subtitles/);
  assert.ok(mp4.args.join(" ").includes("-map 0:2 -c:s:0 mov_text"));
  const mkv = mapStreams(film(pgs, srt), { format: OUTPUT_FORMATS.get("mkv")!, mainVideo: encode });
  assert.deepEqual(mkv.dropped, []);
  assert.ok(mkv.args.join(" ").includes("-map 0:1 -c:s:0 copy -map 0:2 -c:s:1 copy"));
});

Deno.test("the main video is output stream v:0 even after cover art", () => {
  const cover: StreamInfo = {
    index: 0,
    type: "video",
    codec: "mjpeg",
    attachedPicture: true,
  };
  const video: StreamInfo = { index: 1, type: "video", codec: "h264", width: 320, height: 240 };
  const info: MediaInfo = {
    formatName: "mov,mp4",
    duration: 1,
    size: 1,
    bitRate: 1,
    streams: [cover, video],
    video,
  };
  const { args } = mapStreams(info, {
    format: OUTPUT_FORMATS.get("mp4")!,
    mainVideo: { ...encode, filter: "scale=2:2" },
  });
  assert.deepEqual(args.slice(0, 6), [
    "-map",
    "0:1",
    "-c:v:0",
    "libx264",
    "-filter:v:0",
    "scale=2:2",
  ]);
  assert.ok(args.join(" ").includes("-map 0:0 -c:v:1 copy -disposition:v:1 attached_pic"));
});

Deno.test("chapters a format cannot carry are named; AVI keeps no subtitles", () => {
  const srt: StreamInfo = { index: 1, type: "subtitle", codec: "subrip" };
  const { dropped } = mapStreams(film(srt), {
    format: OUTPUT_FORMATS.get("avi")!,
    mainVideo: encode,
  });
  assert.deepEqual(dropped.map((d) => d.type), ["subtitle", "chapters"]);
  assert.equal(dropped[1]!.count, 2);
});
