import { MmpError } from "../protocol/errors.ts";
import { parseTimestamp } from "../cli/units.ts";
import { runFfmpeg } from "./ffmpeg.ts";
import {
  animationThreads,
  inputArgs,
  type JobContext,
  type JobOutput,
  type Operation,
} from "./operation.ts";
import { ensureWritable, OUTPUT_FORMATS, type OutputFormat } from "./formats.ts";
import { encodeVideo, EVEN_SIDES, requireVideo } from "./video.ts";

const FORMATS = ["gif", "webm", "mp4", "apng", "webp"] as const;
type ClipFormat = typeof FORMATS[number];
/** Formats the clip op writes. */
export const CLIP_FORMATS: readonly string[] = FORMATS;
/** Animated pictures: every frame stored whole (or nearly), so they are kept short and small. */
const ANIMATIONS: readonly string[] = ["gif", "apng", "webp"];

/** GIFs (and APNG/WebP animations) are for short loops: longer clips belong in WEBM or MP4. */
export const MAX_GIF_SECONDS = 60;
/** GIF frame rate and width caps: beyond these a GIF grows fast and looks no better. */
export const GIF_MAX_FPS = 15;
export const GIF_MAX_WIDTH = 480;

/** A validated clip request. */
export interface ClipRange {
  start: number;
  end: number;
  format: ClipFormat;
}

function badClip(description: string, solution?: string): MmpError {
  return new MmpError("BAD_REQUEST", description, {
    solution: solution ??
      'Give "start" and "end" as seconds (8.5) or "[HH:]MM:SS[.fff]", end after start',
  });
}

function time(value: unknown, name: string): number {
  if (typeof value !== "number" && typeof value !== "string") {
    throw badClip(`Missing or invalid "${name}"`);
  }
  try {
    const seconds = parseTimestamp(value);
    if (seconds > 366 * 86400) throw new RangeError("too far");
    return seconds;
  } catch {
    throw badClip(`Invalid "${name}" time: ${String(value).slice(0, 40)}`);
  }
}

/** Validates `start`, `end` and `format` before the upload. */
export function parseClip(args: Record<string, unknown>): ClipRange {
  const start = time(args.start, "start");
  const end = time(args.end, "end");
  if (!FORMATS.includes(args.format as ClipFormat)) {
    throw badClip("Invalid clip format", `Use "format" with one of: ${FORMATS.join(", ")}`);
  }
  const format = args.format as ClipFormat;
  if (end <= start) throw badClip(`The clip ends (${end}s) before it starts (${start}s)`);
  if (ANIMATIONS.includes(format)) checkAnimationLength(end - start, format);
  return { start, end, format };
}

/** Refuses an animated picture longer than {@linkcode MAX_GIF_SECONDS}. */
export function checkAnimationLength(seconds: number, format: string): void {
  if (seconds <= MAX_GIF_SECONDS) return;
  throw badClip(
    `An animated ${format.toUpperCase()} may be at most ${MAX_GIF_SECONDS} seconds long`,
    'Pick a shorter range, or use "format": "webm" or "mp4" for longer clips',
  );
}

function checkRange(range: ClipRange, duration: number): void {
  if (duration > 0 && range.end > duration + 0.001) {
    throw badClip(
      `The clip ends at ${range.end}s but the video is only ${duration.toFixed(3)}s long`,
      `Choose an end of at most ${duration.toFixed(3)} seconds`,
    );
  }
}

/** `-ss` for a start after 0; ffmpeg 5.1 writes broken files after `-ss 0` on FLV input. */
function seek(start: number): string[] {
  return start > 0 ? ["-ss", String(start)] : [];
}

/**
 * An animated picture of `seconds` from `start`, at most 15 fps and 480 px wide, looping forever.
 * GIF gets one palette from the clip's own colours, dithered onto it, in one pass.
 */
export async function makeAnimation(
  ctx: JobContext,
  format: OutputFormat,
  range: { start: number; seconds: number },
): Promise<string> {
  const output = ctx.files.path(`out.${format.format}`);
  const fps = Math.min(GIF_MAX_FPS, ctx.info.video?.frameRate ?? GIF_MAX_FPS);
  const scaled = `fps=${fps},scale='min(${GIF_MAX_WIDTH},iw)':-1:flags=lanczos`;
  const filter = format.format === "gif"
    ? `${scaled},split[a][b];[a]palettegen=stats_mode=diff[p];` +
      `[b][p]paletteuse=dither=bayer:bayer_scale=4:diff_mode=rectangle`
    : scaled;
  const loop = format.format === "gif" ? ["-loop", "0"] : [];
  // deno-fmt-ignore
  const args = [
    ...seek(range.start), ...inputArgs(ctx.input, ctx.demuxer), "-t", String(range.seconds),
    "-map", `0:${ctx.info.video!.index}`, "-filter_complex", filter,
    "-c:v", format.video!.encoder, ...format.video!.args, ...loop,
    "-threads", String(animationThreads(navigator.hardwareConcurrency)),
    "-fs", String(ctx.maxOutputBytes), "-f", format.muxer, output,
  ];
  await runFfmpeg(args, {
    ffmpeg: ctx.tools.ffmpeg,
    signal: ctx.signal,
    durationSeconds: range.seconds,
    onProgress: ctx.onProgress,
  });
  return output;
}

async function makeClip(range: ClipRange, ctx: JobContext): Promise<JobOutput> {
  requireVideo(ctx.info, "clip");
  checkRange(range, ctx.info.duration);
  const seconds = range.end - range.start;
  const format = OUTPUT_FORMATS.get(range.format)!;
  await ensureWritable(format, ctx.tools.ffmpeg);
  const path = ANIMATIONS.includes(range.format)
    ? await makeAnimation(ctx, format, { start: range.start, seconds })
    : (await encodeVideo(ctx, {
      format,
      quality: "balanced",
      filter: EVEN_SIDES,
      before: seek(range.start),
      after: ["-t", String(seconds)],
      durationSeconds: seconds,
      mainStreamsOnly: true,
    })).path;
  const stats = { start: range.start, end: range.end, codec: format.video!.codec };
  return { path, format: range.format, stats };
}

/** `{"op":"clip","start":S,"end":E,"format":"gif"|"webm"|"mp4"|"apng"|"webp"}`. */
export const clip: Operation = {
  name: "clip",
  keys: ["start", "end", "format"],
  parse(args) {
    const range = parseClip(args);
    return {
      run: (ctx) => makeClip(range, ctx),
      ...(ANIMATIONS.includes(range.format) ? { threads: animationThreads } : {}),
    };
  },
};
