import { extname } from "node:path";
import { parseTimestamp } from "./units.ts";

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

/** Video ops keep the input's container when it can carry H.264 (or VP9 for webm), else mp4. */
function videoExtension(input: string): string {
  const extension = extname(input).slice(1).toLowerCase();
  return ["mp4", "mov", "mkv", "webm"].includes(extension) ? extension : "mp4";
}

const convert: ClientVerb = {
  name: "convert",
  summary: "Convert a video to MP3 audio, or a time range of it to a GIF or WEBM clip",
  optionsHelp: `  --to FORMAT         mp3 (the sound track), gif or webm (a clip)
  --start TIME        clip start: seconds (5, 8.5) or [HH:]MM:SS[.fff] (gif/webm only)
  --end TIME          clip end, same forms (gif/webm only)`,
  example: "mmp convert talk.mp4 --to gif --start 5 --end 8.5",
  options: ["to", "start", "end"],
  build(values) {
    const to = option(values, "to")?.toLowerCase();
    if (to === "mp3") return { request: { op: "audio" }, extension: "mp3" };
    if (to === "gif" || to === "webm") {
      const start = timeOption(values, "start");
      const end = timeOption(values, "end");
      return { request: { op: "clip", start, end, format: to }, extension: to };
    }
    throw new UsageError(
      to ? `Cannot convert to "${to}": use --to mp3, gif or webm` : "Missing --to FORMAT",
    );
  },
};

const compress: ClientVerb = {
  name: "compress",
  summary: "Make a video smaller at near-original quality (never bigger than the input)",
  optionsHelp: "  --quality LEVEL     high, balanced (default) or small",
  example: "mmp compress holiday.mov --quality balanced",
  options: ["quality"],
  build(values, input) {
    const quality = oneOf(option(values, "quality"), "quality", ["high", "balanced", "small"]);
    return {
      request: { op: "compress", ...(quality && { quality }) },
      extension: videoExtension(input),
    };
  },
};

const resize: ClientVerb = {
  name: "resize",
  summary: "Change a video's resolution",
  optionsHelp: `  --resolution SIZE   WIDTHxHEIGHT with even sides (exact frame size), or a preset
                      144p 240p 360p 480p 540p 720p 1080p 1440p 2160p (sets the shorter
                      side, keeps the aspect ratio)`,
  example: "mmp resize clip.mp4 --resolution 720p",
  options: ["resolution"],
  build(values, input) {
    const resolution = required(values, "resolution", "SIZE (e.g. 1280x720 or 720p)");
    return { request: { op: "resize", resolution }, extension: videoExtension(input) };
  },
};

const aspect: ClientVerb = {
  name: "aspect",
  summary: "Change a video's aspect ratio",
  optionsHelp: `  --aspect W:H        target display aspect, e.g. 16:9, 4:3, 1:1, 9:16
  --mode MODE         pad (letterbox/pillarbox, default), crop (cut the centre) or stretch`,
  example: "mmp aspect phone.mp4 --aspect 16:9 --mode pad",
  options: ["aspect", "mode"],
  build(values, input) {
    const ratio = required(values, "aspect", "W:H (e.g. 16:9)");
    const mode = oneOf(option(values, "mode"), "mode", ["pad", "crop", "stretch"]);
    return {
      request: { op: "aspect", aspect: ratio, ...(mode && { mode }) },
      extension: videoExtension(input),
    };
  },
};

/** Every client verb, by name. */
export const CLIENT_VERBS: ReadonlyMap<string, ClientVerb> = new Map(
  [convert, compress, resize, aspect].map((verb) => [verb.name, verb]),
);
