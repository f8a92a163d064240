import { MmpError } from "../protocol/errors.ts";
import type { JobContext, JobOutput, Operation } from "./operation.ts";
import {
  displaySize,
  encodeVideo,
  even,
  parseVideoOutput,
  requireVideo,
  targetFor,
  VIDEO_OUTPUT_KEYS,
  type VideoOutput,
} from "./video.ts";

const MODES = ["pad", "crop", "stretch"] as const;

/** How the frame reaches the new aspect ratio. */
export type AspectMode = typeof MODES[number];

function badAspect(description: string): MmpError {
  return new MmpError("BAD_REQUEST", description, {
    solution: 'Use "W:H" with numbers such as 16:9, 4:3, 1:1, 9:16 or 2.39:1 (ratio 0.1 to 10)',
  });
}

/** Validates `aspect` (`"16:9"`) against the allow-list; returns width / height. */
export function parseAspect(value: unknown): number {
  if (typeof value !== "string") throw badAspect("The aspect must be a string such as 16:9");
  const match = /^(\d{1,3}(?:\.\d{1,3})?):(\d{1,3}(?:\.\d{1,3})?)$/.exec(value);
  if (!match) throw badAspect(`Invalid aspect ratio: ${value.slice(0, 40)}`);
  const ratio = Number(match[1]) / Number(match[2]);
  if (!(ratio >= 0.1 && ratio <= 10)) throw badAspect(`The aspect ratio ${value} is out of range`);
  return ratio;
}

/** Validates `mode`; default `pad`. */
export function parseMode(value: unknown): AspectMode {
  if (value === undefined) return "pad";
  if (MODES.includes(value as AspectMode)) return value as AspectMode;
  throw new MmpError("BAD_REQUEST", "Invalid aspect mode", {
    solution: `Use one of: ${MODES.join(", ")}`,
  });
}

/** The filter chain giving square pixels at `ratio`, from a display size. */
export function aspectFilter(
  ratio: number,
  mode: AspectMode,
  display: { width: number; height: number },
): { filter: string; width: number; height: number } {
  const w = even(display.width);
  const h = even(display.height);
  const square = `scale=${w}:${h}:flags=lanczos,setsar=1`;
  if (mode === "stretch") {
    const width = even(h * ratio);
    return { filter: `scale=${width}:${h}:flags=lanczos,setsar=1`, width, height: h };
  }
  const wider = w / h > ratio;
  if (mode === "crop") {
    const [width, height] = wider ? [even(h * ratio), h] : [w, even(w / ratio)];
    return { filter: `${square},crop=${width}:${height}`, width, height };
  }
  const [width, height] = wider ? [w, even(w / ratio)] : [even(h * ratio), h];
  return {
    filter: `${square},pad=${width}:${height}:(ow-iw)/2:(oh-ih)/2:color=black`,
    width,
    height,
  };
}

async function changeAspect(
  ratio: number,
  mode: AspectMode,
  output: VideoOutput,
  ctx: JobContext,
): Promise<JobOutput> {
  const video = requireVideo(ctx.info, "aspect");
  const { filter, width, height } = aspectFilter(ratio, mode, displaySize(video));
  const format = targetFor(ctx.inputExtension, output.format);
  const { path, dropped } = await encodeVideo(ctx, {
    filter,
    format,
    stripMetadata: output.stripMetadata,
  });
  return {
    path,
    format: format.format,
    stats: { width, height, mode, codec: format.video!.codec, dropped },
  };
}

/** `{"op":"aspect","aspect":"16:9","mode"?:"pad"|"crop"|"stretch","format"?:F}`. */
export const aspect: Operation = {
  name: "aspect",
  keys: ["aspect", "mode", ...VIDEO_OUTPUT_KEYS],
  parse(args) {
    const ratio = parseAspect(args.aspect);
    const mode = parseMode(args.mode);
    const output = parseVideoOutput(args, "aspect");
    return { run: (ctx) => changeAspect(ratio, mode, output, ctx) };
  },
};
