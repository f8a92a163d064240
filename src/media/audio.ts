import { MmpError } from "../protocol/errors.ts";
import { runFfmpeg } from "./ffmpeg.ts";
import { inputArgs, type JobContext, type JobOutput, type Operation } from "./operation.ts";

/** LAME VBR quality 2: about 190 kbit/s, transparent for most listeners. */
const LAME_QUALITY = "2";

async function extractMp3(ctx: JobContext): Promise<JobOutput> {
  if (!ctx.info.audio) {
    throw new MmpError("NO_AUDIO", "The uploaded file has no audio track to extract", {
      solution: "Check that the video plays with sound, or use another operation such as compress",
    });
  }
  const output = ctx.files.path("out.mp3");
  await runFfmpeg([
    ...inputArgs(ctx.input, ctx.demuxer),
    "-map",
    `0:${ctx.info.audio.index}`,
    "-map_metadata",
    "0",
    "-c:a",
    "libmp3lame",
    "-q:a",
    LAME_QUALITY,
    "-fs",
    String(ctx.maxOutputBytes),
    output,
  ], {
    ffmpeg: ctx.tools.ffmpeg,
    signal: ctx.signal,
    durationSeconds: ctx.info.duration,
    onProgress: ctx.onProgress,
  });
  return { path: output, format: "mp3", stats: { codec: "mp3", vbr_quality: 2 } };
}

/** `{"op":"audio"}`: the first audio track as a VBR MP3. */
export const audio: Operation = {
  name: "audio",
  keys: [],
  parse: () => ({ run: extractMp3 }),
};
