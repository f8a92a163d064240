import { MmpError } from "../protocol/errors.ts";
import { parseTimestamp } from "../cli/units.ts";
import { runFfmpeg } from "./ffmpeg.ts";
import { inputArgs, type JobContext, type JobOutput, type Operation } from "./operation.ts";
import { encodeVideo, requireVideo, type VideoTarget } from "./video.ts";

const FORMATS = ["gif", "webm"] as const;
type ClipFormat = typeof FORMATS[number];

/** GIFs are for short loops: longer clips belong in WEBM. */
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
    throw badClip("Invalid clip format", 'Use "format": "gif" or "webm"');
  }
  const format = args.format as ClipFormat;
  if (end <= start) throw badClip(`The clip ends (${end}s) before it starts (${start}s)`);
  if (format === "gif" && end - start > MAX_GIF_SECONDS) {
    throw badClip(
      `A GIF may be at most ${MAX_GIF_SECONDS} seconds long`,
      'Pick a shorter range, or use "format": "webm" for longer clips',
    );
  }
  return { start, end, format };
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

/** One pass: palette from the clip's own colours, then dithered onto it; loops forever. */
async function makeGif(range: ClipRange, ctx: JobContext): Promise<string> {
  const output = ctx.files.path("out.gif");
  const fps = Math.min(GIF_MAX_FPS, ctx.info.video?.frameRate ?? GIF_MAX_FPS);
  const filter = `fps=${fps},scale='min(${GIF_MAX_WIDTH},iw)':-1:flags=lanczos,split[a][b];` +
    `[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=dither=bayer:bayer_scale=4:diff_mode=rectangle`;
  // deno-fmt-ignore
  const args = [
    ...seek(range.start), ...inputArgs(ctx.input, ctx.demuxer), "-t", String(range.end - range.start),
    "-map", `0:${ctx.info.video!.index}`, "-filter_complex", filter, "-loop", "0",
    "-fs", String(ctx.maxOutputBytes), output,
  ];
  await runFfmpeg(args, {
    ffmpeg: ctx.tools.ffmpeg,
    signal: ctx.signal,
    durationSeconds: range.end - range.start,
    onProgress: ctx.onProgress,
  });
  return output;
}

const WEBM: VideoTarget = {
  format: "webm",
  videoCodec: "libvpx-vp9",
  audioCodec: "libopus",
  copyableAudio: [],
};

async function makeClip(range: ClipRange, ctx: JobContext): Promise<JobOutput> {
  requireVideo(ctx.info, "clip");
  checkRange(range, ctx.info.duration);
  const seconds = range.end - range.start;
  const path = range.format === "gif" ? await makeGif(range, ctx) : await encodeVideo(ctx, {
    target: WEBM,
    quality: "balanced",
    before: seek(range.start),
    after: ["-t", String(seconds)],
    durationSeconds: seconds,
  });
  const stats = {
    start: range.start,
    end: range.end,
    codec: range.format === "gif" ? "gif" : "vp9",
  };
  return { path, format: range.format, stats };
}

/** `{"op":"clip","start":S,"end":E,"format":"gif"|"webm"}`. */
export const clip: Operation = {
  name: "clip",
  keys: ["start", "end", "format"],
  parse(args) {
    const range = parseClip(args);
    return { run: (ctx) => makeClip(range, ctx) };
  },
};
