import { MmpError } from "../protocol/errors.ts";
import type { JobContext, JobOutput, Operation } from "./operation.ts";
import {
  alreadyAs,
  displaySize,
  encodeVideo,
  even,
  MAX_SIDE,
  parseVideoOutput,
  requireVideo,
  targetFor,
  VIDEO_OUTPUT_KEYS,
  type VideoOutput,
} from "./video.ts";

/** Presets name the frame's shorter side: 720p is 1280x720 landscape, 720x1280 portrait. */
export const RESIZE_PRESETS: Readonly<Record<string, number>> = {
  "144p": 144,
  "240p": 240,
  "360p": 360,
  "480p": 480,
  "540p": 540,
  "720p": 720,
  "1080p": 1080,
  "1440p": 1440,
  "2160p": 2160,
};

/** A parsed `resolution`: an exact frame size, or a preset's shorter side. */
export type Resolution = { width: number; height: number } | { shortSide: number };

function badResolution(description: string): MmpError {
  return new MmpError("BAD_REQUEST", description, {
    solution: `Use WIDTHxHEIGHT with even numbers from 16 to ${MAX_SIDE} (e.g. 1280x720), ` +
      `or a preset: ${Object.keys(RESIZE_PRESETS).join(", ")}`,
  });
}

/** Validates `resolution` against the allow-list: `WxH` with even sides, or a preset. */
export function parseResolution(value: unknown): Resolution {
  if (typeof value !== "string") throw badResolution("The resolution must be a string");
  const preset = RESIZE_PRESETS[value.toLowerCase()];
  if (preset) return { shortSide: preset };
  const match = /^(\d{1,5})x(\d{1,5})$/.exec(value);
  if (!match) throw badResolution(`Invalid resolution: ${value.slice(0, 40)}`);
  const width = Number(match[1]);
  const height = Number(match[2]);
  if (width < 16 || height < 16 || width > MAX_SIDE || height > MAX_SIDE) {
    throw badResolution(`The resolution ${width}x${height} is out of range`);
  }
  if (width % 2 || height % 2) {
    throw new MmpError("BAD_REQUEST", `The resolution ${width}x${height} has an odd side`, {
      solution: `4:2:0 video needs even sides: use ${even(width)}x${even(height)}`,
    });
  }
  return { width, height };
}

/** The output frame size for a resolution and an input's display size. */
export function targetSize(resolution: Resolution, display: { width: number; height: number }) {
  if ("width" in resolution) return resolution;
  const portrait = display.height > display.width;
  const ratio = display.width / display.height;
  return portrait
    ? { width: even(resolution.shortSide), height: even(resolution.shortSide / ratio) }
    : { width: even(resolution.shortSide * ratio), height: even(resolution.shortSide) };
}

async function resizeVideo(
  resolution: Resolution,
  output: VideoOutput,
  ctx: JobContext,
): Promise<JobOutput> {
  const video = requireVideo(ctx.info, "resize");
  const size = targetSize(resolution, displaySize(video));
  const target = targetFor(ctx.inputExtension, output.format);
  if (!output.stripMetadata && alreadyAs(ctx, target, size)) {
    return {
      path: ctx.input,
      format: ctx.inputExtension,
      stats: { ...size, codec: video.codec, unchanged: true },
    };
  }
  const { path, dropped } = await encodeVideo(ctx, {
    filter: `scale=${size.width}:${size.height}:flags=lanczos,setsar=1`,
    format: target,
    stripMetadata: output.stripMetadata,
  });
  return {
    path,
    format: target.format,
    stats: { width: size.width, height: size.height, codec: target.video!.codec, dropped },
  };
}

/** `{"op":"resize","resolution":"1280x720"|"720p","format"?:F,"strip_metadata"?:true}`. */
export const resize: Operation = {
  name: "resize",
  keys: ["resolution", ...VIDEO_OUTPUT_KEYS],
  parse(args) {
    const resolution = parseResolution(args.resolution);
    const output = parseVideoOutput(args, "resize");
    return { run: (ctx) => resizeVideo(resolution, output, ctx) };
  },
};
