import { runFfmpeg } from "./ffmpeg.ts";
import { MmpError } from "../protocol/errors.ts";
import { ensureWritable, OUTPUT_FORMATS, type OutputFormat } from "./formats.ts";
import { extractAudio } from "./audio.ts";
import { checkAnimationLength, makeAnimation } from "./clip.ts";
import {
  animationThreads,
  AUDIO_THREADS,
  inputArgs,
  type JobContext,
  type JobOutput,
  type Operation,
} from "./operation.ts";
import type { StreamInfo } from "./probe.ts";
import { type MainVideo, mapStreams } from "./streams.ts";
import {
  EVEN_SIDES,
  parseVideoOutput,
  pictureArgs,
  rateArgs,
  requireVideo,
  videoCodecArgs,
  type VideoOutput,
} from "./video.ts";

/** Every output format: convert writes them all. */
export const CONVERT_FORMATS: readonly string[] = [...OUTPUT_FORMATS.keys()];

/** Containers that keep a copied video's rotation (its display matrix). */
const KEEPS_ROTATION = ["mp4", "m4v", "mov", "3gp", "3g2"];

/**
 * Whether the main video can go into `format` as it is: the container takes the codec, and
 * nothing about the picture has to change (rotation, frame rate, DV's fixed frame).
 */
export function canCopyVideo(video: StreamInfo, format: OutputFormat): boolean {
  if (!format.video?.copy.includes(video.codec) || format.videoFilter) return false;
  if (video.rotation && !KEEPS_ROTATION.includes(format.format)) return false;
  const rate = video.frameRate ?? 0;
  return !format.frameRates || format.frameRates.some((r) => Math.abs(r - rate) < 0.01);
}

/** The main video copied where it can be, else re-encoded with the format's usual encoder. */
function mainVideoFor(video: StreamInfo, format: OutputFormat): MainVideo {
  if (canCopyVideo(video, format)) return { codecArgs: "copy" };
  return { codecArgs: videoCodecArgs(format), filter: EVEN_SIDES };
}

/** The whole file in a film container: streams copied where it takes them, else re-encoded. */
export async function convertFilm(
  output: VideoOutput & { format: OutputFormat },
  ctx: JobContext,
): Promise<JobOutput> {
  const video = requireVideo(ctx.info, "convert");
  const { format } = output;
  const main = mainVideoFor(video, format);
  if (main.codecArgs !== "copy" && format.videoFilter) {
    main.filter = `${main.filter},${format.videoFilter}`;
  }
  const mapping = mapStreams(ctx.info, {
    format,
    mainVideo: main,
    ...(output.stripMetadata ? { stripMetadata: true } : {}),
  });
  const encoded = main.codecArgs !== "copy";
  const path = ctx.files.path(`out.${format.format}`);
  // deno-fmt-ignore
  await runFfmpeg([
    ...inputArgs(ctx.input, ctx.demuxer), ...mapping.args,
    ...(encoded ? [...pictureArgs(video, main.codecArgs[1]!), ...rateArgs(video, format)] : []),
    ...format.muxerArgs, "-fs", String(ctx.maxOutputBytes), "-f", format.muxer, path,
  ], {
    ffmpeg: ctx.tools.ffmpeg,
    signal: ctx.signal,
    durationSeconds: ctx.info.duration,
    onProgress: ctx.onProgress,
  });
  const stats: Record<string, unknown> = {
    codec: encoded ? format.video!.codec : video.codec,
    video_copied: !encoded,
    dropped: mapping.dropped,
  };
  return { path, format: format.format, stats };
}

async function convertFile(
  output: VideoOutput & { format: OutputFormat },
  ctx: JobContext,
): Promise<JobOutput> {
  const { format } = output;
  await ensureWritable(format, ctx.tools.ffmpeg);
  if (format.kind === "audio") return await extractAudio(format, ctx);
  if (format.kind === "animation") {
    requireVideo(ctx.info, "convert");
    checkAnimationLength(ctx.info.duration, format.format);
    const path = await makeAnimation(ctx, format, { start: 0, seconds: ctx.info.duration });
    return { path, format: format.format, stats: { codec: format.video!.codec } };
  }
  return await convertFilm(output, ctx);
}

/** `{"op":"convert","format":F,"strip_metadata"?:true}`: the whole file in container F. */
export const convert: Operation = {
  name: "convert",
  keys: ["format", "strip_metadata"],
  parse(args) {
    const { format, ...output } = parseVideoOutput(args, "convert", CONVERT_FORMATS);
    if (!format) {
      throw new MmpError("BAD_REQUEST", 'convert needs a "format"', {
        solution: `Use "format" with one of: ${CONVERT_FORMATS.join(", ")}`,
      });
    }
    const threads = format.kind === "audio"
      ? () => AUDIO_THREADS
      : format.kind === "animation"
      ? animationThreads
      : undefined;
    return {
      run: (ctx) => convertFile({ ...output, format }, ctx),
      ...(threads ? { threads } : {}),
    };
  },
};
