import { MmpError } from "../protocol/errors.ts";
import { runFfmpeg } from "./ffmpeg.ts";
import {
  ensureWritable,
  formatsOfKind,
  OUTPUT_FORMATS,
  type OutputFormat,
  parseFormat,
} from "./formats.ts";
import {
  AUDIO_THREADS,
  inputArgs,
  type JobContext,
  type JobOutput,
  type Operation,
} from "./operation.ts";
import type { MediaInfo, StreamInfo } from "./probe.ts";
import { mapStreams } from "./streams.ts";

/** Formats the audio op writes: every sound-only format. */
export const AUDIO_FORMATS: readonly string[] = formatsOfKind("audio");

/** The track a one-track format gets: the one marked default, else the first. */
export function mainAudio(info: MediaInfo): StreamInfo | undefined {
  const tracks = info.streams.filter((s) => s.type === "audio");
  return tracks.find((s) => s.dispositions?.includes("default")) ?? tracks[0];
}

/** The sound of the upload in `format` (every track where the format takes several). */
export async function extractAudio(format: OutputFormat, ctx: JobContext): Promise<JobOutput> {
  const main = mainAudio(ctx.info);
  if (!main) {
    throw new MmpError("NO_AUDIO", "The uploaded file has no audio track to extract", {
      solution: "Check that the video plays with sound, or use another operation such as compress",
    });
  }
  await ensureWritable(format, ctx.tools.ffmpeg);
  const tracks = format.multiAudio ? ctx.info.streams.filter((s) => s.type === "audio") : [main];
  // Only the sound is asked for: pictures, subtitles and attachments are left out on purpose.
  const sound: MediaInfo = { ...ctx.info, streams: tracks };
  delete sound.video;
  const mapping = mapStreams(sound, { format });
  const output = ctx.files.path(`out.${format.format}`);
  // deno-fmt-ignore
  await runFfmpeg([
    ...inputArgs(ctx.input, ctx.demuxer), ...mapping.args, ...format.muxerArgs,
    "-threads", String(AUDIO_THREADS),
    "-fs", String(ctx.maxOutputBytes), "-f", format.muxer, output,
  ], {
    ffmpeg: ctx.tools.ffmpeg,
    signal: ctx.signal,
    durationSeconds: ctx.info.duration,
    onProgress: ctx.onProgress,
  });
  const copied = mapping.args.includes("copy");
  const stats: Record<string, unknown> = {
    codec: copied ? main.codec : format.audio!.codec,
    tracks: tracks.length,
    copied,
  };
  if (format.format === "mp3" && !copied) stats.vbr_quality = 2;
  if (mapping.dropped.length > 0) stats.dropped = mapping.dropped;
  return { path: output, format: format.format, stats };
}

/** `{"op":"audio","format"?:"mp3"|"m4a"|"flac"|…}`: the sound track(s) in that format. */
export const audio: Operation = {
  name: "audio",
  keys: ["format"],
  parse(args) {
    const format = parseFormat(args.format, AUDIO_FORMATS, "audio") ?? OUTPUT_FORMATS.get("mp3")!;
    return { run: (ctx) => extractAudio(format, ctx), threads: () => AUDIO_THREADS };
  },
};
