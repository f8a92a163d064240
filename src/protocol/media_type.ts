import { MmpError } from "./errors.ts";

/** Container extensions the server accepts as input; the file on disk gets this extension. */
export const INPUT_EXTENSIONS: ReadonlySet<string> = new Set([
  "mp4",
  "m4v",
  "mov",
  "mkv",
  "webm",
  "avi",
  "flv",
  "ts",
  "mts",
  "m2ts",
  "3gp",
  "3g2",
  "ogv",
  "mpg",
  "mpeg",
  "wmv",
  "asf",
  "mxf",
  "dv",
  "vob",
  "mp3",
  "m4a",
  "wav",
  "flac",
  "ogg",
  "opus",
  "gif",
]);

/** MIME types clients may send instead of an extension. */
const MIME_TO_EXTENSION: Readonly<Record<string, string>> = {
  "video/mp4": "mp4",
  "video/x-m4v": "m4v",
  "video/quicktime": "mov",
  "video/x-matroska": "mkv",
  "video/webm": "webm",
  "video/x-msvideo": "avi",
  "video/avi": "avi",
  "video/msvideo": "avi",
  "video/x-flv": "flv",
  "video/mp2t": "ts",
  "video/3gpp": "3gp",
  "video/3gpp2": "3g2",
  "video/ogg": "ogv",
  "video/mpeg": "mpg",
  "video/x-ms-wmv": "wmv",
  "video/x-ms-asf": "asf",
  "application/mxf": "mxf",
  "video/dv": "dv",
  "audio/mpeg": "mp3",
  "audio/mp4": "m4a",
  "audio/wav": "wav",
  "audio/x-wav": "wav",
  "audio/flac": "flac",
  "audio/ogg": "ogg",
  "audio/opus": "opus",
  "image/gif": "gif",
};

/** MIME type of each output format the server produces. */
export const OUTPUT_MIME: Readonly<Record<string, string>> = {
  mp3: "audio/mpeg",
  mp4: "video/mp4",
  gif: "image/gif",
  webm: "video/webm",
};

/**
 * The file extension for a request's media type (`mp4`, `.MP4` or `video/mp4`), checked against
 * the allow-list. Throws `UNSUPPORTED_MEDIA` for anything else.
 */
export function normalizeMediaType(mediaType: string): string {
  const lower = mediaType.trim().toLowerCase();
  const extension = MIME_TO_EXTENSION[lower.split(";")[0]!.trim()] ??
    (lower.startsWith(".") ? lower.slice(1) : lower);
  if (INPUT_EXTENSIONS.has(extension)) return extension;
  const shown = /^[\x20-\x7e]{1,32}$/.test(mediaType) ? `"${mediaType}"` : "this media type";
  throw new MmpError("UNSUPPORTED_MEDIA", `The server does not accept ${shown} as input`, {
    solution: `Send one of: ${[...INPUT_EXTENSIONS].join(", ")} (or its MIME type)`,
  });
}
