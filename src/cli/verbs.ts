import { extname } from "node:path";
import { parseTimestamp } from "./units.ts";
import { AUDIO_FORMATS } from "../media/audio.ts";
import { COMPRESS_FORMATS } from "../media/compress.ts";
import { CONVERT_FORMATS } from "../media/convert.ts";
import { VIDEO_FORMATS } from "../media/video.ts";

/** Thrown for a command line that cannot work; main prints it with exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Option values as `parseArgs` returns them. */
export type OptionValues = Record<string, string | boolean | undefined>;

/** What a client verb sends and what it produces. */
export interface VerbRequest {
  request: Record<string, unknown>;
  /** Extension of the output, for the default output path. */
  extension: string;
}

/** One client verb of the CLI. */
export interface ClientVerb {
  name: string;
  summary: string;
  /** Help text for the verb's own options. */
  optionsHelp: string;
  example: string;
  /** The verb's own string options. */
  options: readonly string[];
  /** The verb's own boolean options. */
  flags?: readonly string[];
  /** Builds the request from the options and the input path; throws {@linkcode UsageError}. */
  build(values: OptionValues, input: string): VerbRequest;
}

function option(values: OptionValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === "string" ? value : undefined;
}

function required(values: OptionValues, name: string, hint: string): string {
  const value = option(values, name);
  if (value === undefined) throw new UsageError(`Missing --${name} ${hint}`);
  return value;
}

function oneOf(value: string | undefined, name: string, allowed: readonly string[]) {
  if (value === undefined || allowed.includes(value)) return value;
  throw new UsageError(`--${name} must be one of: ${allowed.join(", ")}`);
}

/** A time option as the protocol wants it: a number of seconds, or the clock string as given. */
function timeOption(values: OptionValues, name: string): number | string {
  const value = required(values, name, "TIME (seconds or [HH:]MM:SS[.fff])");
  try {
    parseTimestamp(value);
  } catch (err) {
    throw new UsageError(`--${name}: ${(err as Error).message}`);
  }
  return /^\d+(\.\d+)?$/.test(value) ? Number(value) : value;
}

/** Video ops keep the input's container when it is a common film container, else mp4. */
function videoExtension(input: string): string {
  const extension = extname(input).slice(1).toLowerCase();
  return ["mp4", "m4v", "mov", "mkv", "webm"].includes(extension) ? extension : "mp4";
}

/** A `--format`/`--to` value: one of `allowed`, lower-cased, or a usage error listing them. */
function formatOption(
  values: OptionValues,
  name: string,
  allowed: readonly string[],
): string | undefined {
  const value = option(values, name)?.toLowerCase().replace(/^\./, "");
  if (value === undefined || allowed.includes(value)) return value;
  throw new UsageError(`Cannot write "${value}" with --${name}: use one of ${allowed.join(", ")}`);
}

/** `format` and `strip_metadata` for the video verbs, and the output's extension. */
function videoOutput(values: OptionValues, input: string, allowed: readonly string[]) {
  const format = formatOption(values, "format", allowed);
  const request = {
    ...(format && { format }),
    ...(values["strip-metadata"] === true && { strip_metadata: true }),
  };
  return { request, extension: format ?? videoExtension(input) };
}

const FORMAT_HELP = (formats: readonly string[]) =>
  `  --format FORMAT     output container: ${formats.join(", ")}
                      (default: the input's when it is mp4, m4v, mov, mkv or webm, else mp4)
  --strip-metadata    remove title, dates, location and other metadata (languages stay)`;

const CLIP_TARGETS = ["gif", "webm", "mp4", "apng", "webp"];

const convert: ClientVerb = {
  name: "convert",
  summary: "Convert a file to another format, extract its sound, or cut a clip",
  optionsHelp: `  --to FORMAT         any output format: ${CONVERT_FORMATS.join(", ")}
                      sound formats (${AUDIO_FORMATS.join(", ")}) extract the sound track;
                      other formats keep every stream, copied where the format takes it
  --start TIME        clip start: seconds (5, 8.5) or [HH:]MM:SS[.fff] (${CLIP_TARGETS.join("/")})
  --end TIME          clip end, same forms
  --strip-metadata    remove title, dates, location and other metadata (languages stay)`,
  example: "mmp convert talk.mp4 --to gif --start 5 --end 8.5",
  options: ["to", "start", "end"],
  flags: ["strip-metadata"],
  build(values) {
    const to = formatOption(values, "to", CONVERT_FORMATS);
    if (!to) throw new UsageError("Missing --to FORMAT");
    const strip = values["strip-metadata"] === true ? { strip_metadata: true } : {};
    if (AUDIO_FORMATS.includes(to)) {
      return { request: { op: "audio", ...(to !== "mp3" && { format: to }) }, extension: to };
    }
    const clip = option(values, "start") !== undefined || option(values, "end") !== undefined;
    if (clip) {
      if (!CLIP_TARGETS.includes(to)) {
        throw new UsageError(`--start/--end make a clip: use --to ${CLIP_TARGETS.join(", ")}`);
      }
      const start = timeOption(values, "start");
      const end = timeOption(values, "end");
      return { request: { op: "clip", start, end, format: to }, extension: to };
    }
    return { request: { op: "convert", format: to, ...strip }, extension: to };
  },
};

const compress: ClientVerb = {
  name: "compress",
  summary: "Make a video smaller at near-original quality (never bigger than the input)",
  optionsHelp: `  --quality LEVEL     high, balanced (default) or small
${FORMAT_HELP(COMPRESS_FORMATS).replace("mp4, m4v, mov, mkv or webm", "mkv or webm")}`,
  example: "mmp compress holiday.mov --quality balanced",
  options: ["quality", "format"],
  flags: ["strip-metadata"],
  build(values, input) {
    const quality = oneOf(option(values, "quality"), "quality", ["high", "balanced", "small"]);
    const { request } = videoOutput(values, input, COMPRESS_FORMATS);
    const own = extname(input).slice(1).toLowerCase();
    return {
      request: { op: "compress", ...(quality && { quality }), ...request },
      extension: request.format ?? (["mkv", "webm"].includes(own) ? own : "mp4"),
    };
  },
};

const resize: ClientVerb = {
  name: "resize",
  summary: "Change a video's resolution",
  optionsHelp: `  --resolution SIZE   WIDTHxHEIGHT with even sides (exact frame size), or a preset
                      144p 240p 360p 480p 540p 720p 1080p 1440p 2160p (sets the shorter
                      side, keeps the aspect ratio)
${FORMAT_HELP(VIDEO_FORMATS)}`,
  example: "mmp resize clip.mp4 --resolution 720p",
  options: ["resolution", "format"],
  flags: ["strip-metadata"],
  build(values, input) {
    const resolution = required(values, "resolution", "SIZE (e.g. 1280x720 or 720p)");
    const output = videoOutput(values, input, VIDEO_FORMATS);
    return {
      request: { op: "resize", resolution, ...output.request },
      extension: output.extension,
    };
  },
};

const aspect: ClientVerb = {
  name: "aspect",
  summary: "Change a video's aspect ratio",
  optionsHelp: `  --aspect W:H        target display aspect, e.g. 16:9, 4:3, 1:1, 9:16
  --mode MODE         pad (letterbox/pillarbox, default), crop (cut the centre) or stretch
${FORMAT_HELP(VIDEO_FORMATS)}`,
  example: "mmp aspect phone.mp4 --aspect 16:9 --mode pad",
  options: ["aspect", "mode", "format"],
  flags: ["strip-metadata"],
  build(values, input) {
    const ratio = required(values, "aspect", "W:H (e.g. 16:9)");
    const mode = oneOf(option(values, "mode"), "mode", ["pad", "crop", "stretch"]);
    const output = videoOutput(values, input, VIDEO_FORMATS);
    return {
      request: { op: "aspect", aspect: ratio, ...(mode && { mode }), ...output.request },
      extension: output.extension,
    };
  },
};

/** Every client verb, by name. */
export const CLIENT_VERBS: ReadonlyMap<string, ClientVerb> = new Map(
  [convert, compress, resize, aspect].map((verb) => [verb.name, verb]),
);
