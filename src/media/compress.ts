import { MmpError } from "../protocol/errors.ts";
import type { JobContext, JobOutput, Operation } from "./operation.ts";
import { encodeVideo, type Quality, requireVideo, targetFor } from "./video.ts";

const QUALITIES: readonly Quality[] = ["high", "balanced", "small"];

/** Validates `quality`; default `balanced`. */
export function parseQuality(value: unknown): Quality {
  if (value === undefined) return "balanced";
  if (QUALITIES.includes(value as Quality)) return value as Quality;
  throw new MmpError("BAD_REQUEST", "Invalid compress quality", {
    solution: `Use one of: ${QUALITIES.join(", ")}`,
  });
}

/** Never bigger: when the encode does not beat the upload, the upload itself is the result. */
async function compressVideo(quality: Quality, ctx: JobContext): Promise<JobOutput> {
  requireVideo(ctx.info, "compress");
  const target = targetFor(ctx.inputExtension);
  const path = await encodeVideo(ctx, { target, quality });
  const [encoded, original] = await Promise.all([Deno.stat(path), Deno.stat(ctx.input)]);
  if (encoded.size < original.size) {
    return {
      path,
      format: target.format,
      stats: { codec: target.videoCodec, quality, kept_input: false },
    };
  }
  await Deno.remove(path);
  return {
    path: ctx.input,
    format: ctx.inputExtension,
    stats: { codec: ctx.info.video?.codec ?? "unknown", quality, kept_input: true },
  };
}

/** `{"op":"compress","quality"?:"high"|"balanced"|"small"}`. */
export const compress: Operation = {
  name: "compress",
  keys: ["quality"],
  parse(args) {
    const quality = parseQuality(args.quality);
    return { run: (ctx) => compressVideo(quality, ctx) };
  },
};
