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
  /** Builds the request from the options; throws {@linkcode UsageError}. */
  build(values: OptionValues): VerbRequest;
}

function stringOption(values: OptionValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === "string" ? value : undefined;
}

const convert: ClientVerb = {
  name: "convert",
  summary: "Convert a video to another format (mp3 audio)",
  optionsHelp: "  --to FORMAT         mp3: the sound track as MP3",
  example: "mmp convert talk.mp4 --to mp3",
  options: ["to"],
  build(values) {
    const to = stringOption(values, "to")?.toLowerCase();
    if (to === "mp3") return { request: { op: "audio" }, extension: "mp3" };
    throw new UsageError(to ? `Cannot convert to "${to}": use --to mp3` : "Missing --to FORMAT");
  },
};

/** Every client verb, by name. */
export const CLIENT_VERBS: ReadonlyMap<string, ClientVerb> = new Map([[convert.name, convert]]);
