/**
 * Output formats: every container the server writes, with the codecs each gets. One table, read by
 * the operations (which format they may write), the stream mapping (what each container carries
 * as it is) and the `info` answer. docs/protocol.md shows the same table.
 *
 * @module
 */
import { MmpError } from "../protocol/errors.ts";
import { availableEncoders } from "./encoders.ts";

/** What a format is for: a film, a sound file, or an animated picture. */
export type FormatKind = "video" | "audio" | "animation";

/** How a container gets a kind of stream it must re-encode, and which codecs it takes as they are. */
export interface CodecRule {
  /** ffmpeg encoder used when the stream cannot be copied. */
  encoder: string;
  /** Codec name the encoder produces (ffprobe's `codec_name`). */
  codec: string;
  /** Encoder options for high quality. */
  args: readonly string[];
  /** Codecs (ffprobe names) this container carries as they are. */
  copy: readonly string[];
}

/** Video encoders that keep 10- and 12-bit pictures (4:2:0 10-bit at least). */
export const HIGH_BIT_DEPTH_ENCODERS: ReadonlySet<string> = new Set([
  "libx264",
  "libx265",
  "libsvtav1",
  "libvpx-vp9",
  "libaom-av1",
  "ffv1",
  "prores_ks",
]);

/** One output format. */
export interface OutputFormat {
  /** The format's name as the protocol uses it: a file extension (`mkv`, `mp3`). */
  format: string;
  /** ffmpeg muxer (`-f`). */
  muxer: string;
  mime: string;
  kind: FormatKind;
  /** Video handling; absent for audio-only formats. */
  video?: CodecRule;
  /** Audio handling; absent for formats without sound (GIF, APNG, WebP). */
  audio?: CodecRule;
  /** Subtitle handling: text subtitles are converted to `encoder`; absent: none carried. */
  subtitles?: CodecRule;
  /** Carries every audio track (else the first only). */
  multiAudio: boolean;
  /** Carries font and other attachments (Matroska). */
  attachments: boolean;
  /** Carries cover art (attached pictures) as it is. */
  coverArt: boolean;
  /** Carries chapters. */
  chapters: boolean;
  /** Keeps variable frame rate: timestamps pass through, no frame is duplicated. */
  variableFrameRate: boolean;
  /** Frame rates the format allows (MPEG-2 and DV are strict); absent: any. */
  frameRates?: readonly number[];
  /** Audio sample rate the format requires; absent: any the encoder takes. */
  sampleRate?: number;
  /** Most audio channels (AMR: mono). */
  maxChannels?: number;
  /** Extra filter after the video's own (DV's fixed frame size). */
  videoFilter?: string;
  /** Muxer options. */
  muxerArgs: readonly string[];
}

const X264 = ["-preset", "fast", "-crf", "20"];
const AAC = ["-b:a", "192k"];
const OPUS = ["-b:a", "160k"];
// FLAC in MP4 is experimental in ffmpeg 5.1: such tracks are re-encoded.
const MP4_AUDIO = ["aac", "mp3", "alac", "ac3", "eac3", "opus"];
const MP4_VIDEO = ["h264", "hevc", "av1", "mpeg4", "vp9", "mjpeg", "png"];
const MKV_VIDEO = [
  "h264",
  "hevc",
  "av1",
  "vp8",
  "vp9",
  "mpeg4",
  "mpeg2video",
  "mpeg1video",
  "theora",
  "ffv1",
  "prores",
  "mjpeg",
  "dnxhd",
  "msmpeg4v3",
  "wmv3",
  "vc1",
  "dvvideo",
];
const MKV_AUDIO = [
  "aac",
  "mp3",
  "mp2",
  "opus",
  "vorbis",
  "flac",
  "alac",
  "ac3",
  "eac3",
  "dts",
  "truehd",
  "pcm_s16le",
  "pcm_s24le",
  "pcm_s32le",
  "pcm_f32le",
  "wavpack",
  "tta",
];
const MKV_SUBTITLES = ["subrip", "ass", "ssa", "webvtt", "hdmv_pgs_subtitle", "dvd_subtitle"];
const PCM_LE = ["pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_u8"];
/** Rates MPEG-2 (and so DVD, MPEG-PS and MXF) can signal. */
const MPEG2_RATES = [24000 / 1001, 24, 25, 30000 / 1001, 30, 50, 60000 / 1001, 60];

const h264: CodecRule = { encoder: "libx264", codec: "h264", args: X264, copy: MP4_VIDEO };
const aac: CodecRule = { encoder: "aac", codec: "aac", args: AAC, copy: MP4_AUDIO };
const movText: CodecRule = { encoder: "mov_text", codec: "mov_text", args: [], copy: ["mov_text"] };

/** Defaults every entry starts from: a film container with one sound track and nothing more. */
const BASE = {
  multiAudio: false,
  attachments: false,
  coverArt: false,
  chapters: false,
  variableFrameRate: false,
  muxerArgs: [] as readonly string[],
};

function mp4Family(format: string, muxer: string, mime: string): OutputFormat {
  return {
    ...BASE,
    format,
    muxer,
    mime,
    kind: "video",
    video: h264,
    audio: aac,
    subtitles: movText,
    multiAudio: true,
    coverArt: true,
    chapters: true,
    variableFrameRate: true,
    muxerArgs: ["-movflags", "+faststart"],
  };
}

function audioOnly(
  format: string,
  muxer: string,
  mime: string,
  audio: CodecRule,
  extra: Partial<OutputFormat> = {},
): OutputFormat {
  return { ...BASE, format, muxer, mime, kind: "audio", audio, ...extra };
}

function animation(format: string, muxer: string, mime: string, video: CodecRule): OutputFormat {
  return { ...BASE, format, muxer, mime, kind: "animation", video, muxerArgs: [] };
}

const matroskaAudio: CodecRule = {
  encoder: "libopus",
  codec: "opus",
  args: OPUS,
  copy: MKV_AUDIO,
};

/** Every output format, by name. Only those whose encoders this ffmpeg has are offered. */
export const OUTPUT_FORMATS: ReadonlyMap<string, OutputFormat> = new Map(
  ([
    mp4Family("mp4", "mp4", "video/mp4"),
    mp4Family("m4v", "mp4", "video/x-m4v"),
    {
      ...mp4Family("mov", "mov", "video/quicktime"),
      // ffmpeg 5.1 writes AV1, Opus and FLAC only in MP4 mode.
      video: { ...h264, copy: MP4_VIDEO.filter((c) => c !== "av1").concat("prores", "dnxhd") },
      audio: { ...aac, copy: ["aac", "mp3", "alac", "ac3", "pcm_s16le", "pcm_s16be", "pcm_s24le"] },
    },
    {
      ...mp4Family("3gp", "3gp", "video/3gpp"),
      video: { ...h264, copy: ["h264", "mpeg4", "h263"] },
      audio: { ...aac, copy: ["aac", "amr_nb", "amr_wb"] },
    },
    {
      ...mp4Family("3g2", "3g2", "video/3gpp2"),
      video: { ...h264, copy: ["h264", "mpeg4", "h263"] },
      audio: { ...aac, copy: ["aac", "amr_nb", "amr_wb"] },
    },
    {
      ...BASE,
      format: "mkv",
      muxer: "matroska",
      mime: "video/x-matroska",
      kind: "video",
      video: { ...h264, copy: MKV_VIDEO },
      audio: { ...aac, copy: MKV_AUDIO },
      subtitles: { encoder: "srt", codec: "subrip", args: [], copy: MKV_SUBTITLES },
      multiAudio: true,
      attachments: true,
      coverArt: true,
      chapters: true,
      variableFrameRate: true,
    },
    {
      ...BASE,
      format: "webm",
      muxer: "webm",
      mime: "video/webm",
      kind: "video",
      video: {
        encoder: "libvpx-vp9",
        codec: "vp9",
        // deno-fmt-ignore
        args: ["-crf", "30", "-b:v", "0", "-deadline", "good", "-cpu-used", "4", "-row-mt", "1"],
        copy: ["vp8", "vp9", "av1"],
      },
      audio: { encoder: "libopus", codec: "opus", args: OPUS, copy: ["opus", "vorbis"] },
      subtitles: { encoder: "webvtt", codec: "webvtt", args: [], copy: ["webvtt"] },
      multiAudio: true,
      chapters: true,
      variableFrameRate: true,
    },
    {
      ...BASE,
      format: "avi",
      muxer: "avi",
      mime: "video/x-msvideo",
      kind: "video",
      video: {
        encoder: "mpeg4",
        codec: "mpeg4",
        args: ["-q:v", "2", "-tag:v", "XVID"],
        copy: ["mpeg4", "h264", "mjpeg", "msmpeg4v3", "dvvideo", "ffv1", "mpeg2video"],
      },
      audio: {
        encoder: "libmp3lame",
        codec: "mp3",
        args: ["-q:a", "2"],
        copy: ["mp3", "ac3", "mp2", "pcm_s16le", "aac"],
      },
      multiAudio: true,
    },
    {
      ...BASE,
      format: "flv",
      muxer: "flv",
      mime: "video/x-flv",
      kind: "video",
      video: { ...h264, copy: ["h264", "flv1"] },
      audio: { ...aac, copy: ["aac", "mp3"] },
      variableFrameRate: true,
    },
    {
      ...BASE,
      format: "ts",
      muxer: "mpegts",
      mime: "video/mp2t",
      kind: "video",
      video: { ...h264, copy: ["h264", "hevc", "mpeg2video", "mpeg1video"] },
      audio: { ...aac, copy: ["aac", "mp3", "mp2", "ac3", "eac3", "opus"] },
      subtitles: { encoder: "dvbsub", codec: "dvb_subtitle", args: [], copy: ["dvb_subtitle"] },
      multiAudio: true,
      variableFrameRate: true,
    },
    {
      ...BASE,
      format: "m2ts",
      muxer: "mpegts",
      mime: "video/mp2t",
      kind: "video",
      video: { ...h264, copy: ["h264", "hevc", "mpeg2video", "vc1"] },
      audio: { encoder: "ac3", codec: "ac3", args: ["-b:a", "448k"], copy: ["ac3", "eac3", "aac"] },
      multiAudio: true,
      variableFrameRate: true,
      muxerArgs: ["-mpegts_m2ts_mode", "1"],
    },
    ...["mpg", "vob"].map((format): OutputFormat => ({
      ...BASE,
      format,
      muxer: format === "vob" ? "vob" : "mpeg",
      mime: "video/mpeg",
      kind: "video",
      video: {
        encoder: "mpeg2video",
        codec: "mpeg2video",
        args: ["-q:v", "2", "-maxrate", "15M", "-bufsize", "1835k"],
        copy: ["mpeg2video", "mpeg1video"],
      },
      audio: format === "vob"
        ? { encoder: "ac3", codec: "ac3", args: ["-b:a", "384k"], copy: ["ac3", "mp2"] }
        : { encoder: "mp2", codec: "mp2", args: ["-b:a", "384k"], copy: ["mp2", "mp3", "ac3"] },
      multiAudio: true,
      frameRates: MPEG2_RATES,
      sampleRate: 48000,
    })),
    {
      ...BASE,
      format: "ogv",
      muxer: "ogg",
      mime: "video/ogg",
      kind: "video",
      video: { encoder: "libtheora", codec: "theora", args: ["-q:v", "8"], copy: ["theora"] },
      audio: {
        encoder: "libvorbis",
        codec: "vorbis",
        args: ["-q:a", "6"],
        copy: ["vorbis", "opus", "flac"],
      },
      multiAudio: true,
      chapters: true,
    },
    ...["wmv", "asf"].map((format): OutputFormat => ({
      ...BASE,
      format,
      muxer: "asf",
      mime: format === "wmv" ? "video/x-ms-wmv" : "video/x-ms-asf",
      kind: "video",
      video: {
        encoder: "wmv2",
        codec: "wmv2",
        args: ["-q:v", "2"],
        copy: ["wmv1", "wmv2", "wmv3", "vc1", "msmpeg4v3"],
      },
      audio: { encoder: "wmav2", codec: "wmav2", args: ["-b:a", "192k"], copy: ["wmav2", "mp3"] },
      multiAudio: true,
    })),
    {
      ...BASE,
      format: "mxf",
      muxer: "mxf",
      mime: "application/mxf",
      kind: "video",
      video: {
        encoder: "mpeg2video",
        codec: "mpeg2video",
        args: ["-q:v", "2", "-maxrate", "50M", "-bufsize", "8M"],
        copy: ["mpeg2video"],
      },
      audio: { encoder: "pcm_s16le", codec: "pcm_s16le", args: [], copy: ["pcm_s16le"] },
      multiAudio: true,
      frameRates: [25, 30000 / 1001, 50, 60000 / 1001],
      sampleRate: 48000,
    },
    {
      ...BASE,
      format: "nut",
      muxer: "nut",
      mime: "video/x-nut",
      kind: "video",
      video: { ...h264, copy: [...MKV_VIDEO, "rawvideo"] },
      audio: { encoder: "flac", codec: "flac", args: [], copy: [...MKV_AUDIO, "pcm_s16be"] },
      multiAudio: true,
      variableFrameRate: true,
    },
    {
      ...BASE,
      format: "dv",
      muxer: "dv",
      mime: "video/dv",
      kind: "video",
      video: { encoder: "dvvideo", codec: "dvvideo", args: [], copy: [] },
      audio: { encoder: "pcm_s16le", codec: "pcm_s16le", args: ["-ac", "2"], copy: [] },
      frameRates: [25],
      sampleRate: 48000,
      // PAL DV: 720x576 with 16:15 pixels is a 768x576 picture; fit, pad, squeeze.
      videoFilter: "scale=768:576:force_original_aspect_ratio=decrease:flags=lanczos," +
        "pad=768:576:(ow-iw)/2:(oh-ih)/2,scale=720:576,setsar=16/15,format=yuv420p",
    },
    animation("gif", "gif", "image/gif", { encoder: "gif", codec: "gif", args: [], copy: [] }),
    animation("apng", "apng", "image/apng", {
      encoder: "apng",
      codec: "apng",
      args: ["-plays", "0"],
      copy: [],
    }),
    animation("webp", "webp", "image/webp", {
      encoder: "libwebp_anim",
      codec: "webp",
      args: ["-quality", "80", "-loop", "0"],
      copy: [],
    }),
    audioOnly("mp3", "mp3", "audio/mpeg", {
      encoder: "libmp3lame",
      codec: "mp3",
      args: ["-q:a", "2"],
      copy: ["mp3"],
    }),
    audioOnly("m4a", "ipod", "audio/mp4", { ...aac, copy: ["aac", "alac"] }, {
      chapters: true,
      coverArt: true,
      muxerArgs: ["-movflags", "+faststart"],
    }),
    audioOnly("aac", "adts", "audio/aac", { ...aac, copy: ["aac"] }),
    audioOnly("opus", "opus", "audio/opus", {
      encoder: "libopus",
      codec: "opus",
      args: OPUS,
      copy: ["opus"],
    }),
    audioOnly("ogg", "ogg", "audio/ogg", {
      encoder: "libvorbis",
      codec: "vorbis",
      args: ["-q:a", "6"],
      copy: ["vorbis", "opus", "flac"],
    }, { chapters: true }),
    audioOnly("flac", "flac", "audio/flac", {
      encoder: "flac",
      codec: "flac",
      args: [],
      copy: ["flac"],
    }),
    audioOnly("wav", "wav", "audio/wav", {
      encoder: "pcm_s16le",
      codec: "pcm_s16le",
      args: [],
      copy: PCM_LE,
    }),
    audioOnly("aiff", "aiff", "audio/aiff", {
      encoder: "pcm_s16be",
      codec: "pcm_s16be",
      args: [],
      copy: ["pcm_s16be", "pcm_s24be", "pcm_s32be"],
    }),
    audioOnly("ac3", "ac3", "audio/ac3", {
      encoder: "ac3",
      codec: "ac3",
      args: ["-b:a", "448k"],
      copy: ["ac3"],
    }),
    audioOnly("wma", "asf", "audio/x-ms-wma", {
      encoder: "wmav2",
      codec: "wmav2",
      args: ["-b:a", "192k"],
      copy: ["wmav2"],
    }),
    audioOnly("amr", "amr", "audio/amr", {
      encoder: "libopencore_amrnb",
      codec: "amr_nb",
      args: ["-b:a", "12.2k"],
      copy: ["amr_nb"],
    }, { sampleRate: 8000, maxChannels: 1 }),
    audioOnly("mka", "matroska", "audio/x-matroska", matroskaAudio, {
      multiAudio: true,
      attachments: true,
      chapters: true,
    }),
  ] satisfies OutputFormat[]).map((entry) => [entry.format, entry]),
);

/** Formats of each kind, in table order. */
export function formatsOfKind(...kinds: FormatKind[]): string[] {
  return [...OUTPUT_FORMATS.values()].filter((f) => kinds.includes(f.kind)).map((f) => f.format);
}

/**
 * Validates an op's `format` against the formats it can write; `undefined` when absent.
 * Throws `BAD_REQUEST` naming the formats it can.
 */
export function parseFormat(
  value: unknown,
  allowed: readonly string[],
  op: string,
): OutputFormat | undefined {
  if (value === undefined) return undefined;
  const name = typeof value === "string" ? value.toLowerCase().replace(/^\./, "") : "";
  if (allowed.includes(name)) return OUTPUT_FORMATS.get(name)!;
  const shown = typeof value === "string" && /^[\w.-]{1,16}$/.test(value) ? ` "${value}"` : "";
  throw new MmpError("BAD_REQUEST", `"${op}" cannot write the format${shown}`, {
    solution: `Use "format" with one of: ${allowed.join(", ")}`,
  });
}

/** The PCM codec that holds `bits` per sample losslessly, for WAV/AIFF of deeper sources. */
export function pcmFor(format: OutputFormat, bits: number | undefined): string | undefined {
  if (format.format !== "wav" && format.format !== "aiff") return undefined;
  const endian = format.format === "wav" ? "le" : "be";
  if (!bits || bits <= 16) return `pcm_s16${endian}`;
  return bits <= 24 ? `pcm_s24${endian}` : `pcm_s32${endian}`;
}

/** The encoders a format needs that `have` lacks; empty when this ffmpeg can write it. */
export function missingEncoders(format: OutputFormat, have: ReadonlySet<string>): string[] {
  return [format.video?.encoder, format.audio?.encoder]
    .filter((e): e is string => e !== undefined && !have.has(e));
}

/** Throws `BAD_REQUEST` when this server's ffmpeg lacks an encoder `format` needs. */
export async function ensureWritable(format: OutputFormat, ffmpeg: string): Promise<void> {
  const missing = missingEncoders(format, await availableEncoders(ffmpeg));
  if (missing.length === 0) return;
  throw new MmpError(
    "BAD_REQUEST",
    `This server cannot write ${format.format}: its ffmpeg has no ${missing.join(" or ")} encoder`,
    { solution: "Pick another format; `mmp formats` lists the ones this server writes" },
  );
}

/** The output formats this ffmpeg can write, in table order. */
export function writableFormats(have: ReadonlySet<string>): OutputFormat[] {
  return [...OUTPUT_FORMATS.values()].filter((f) => missingEncoders(f, have).length === 0);
}

/** The MIME type of an output format; `application/octet-stream` for unknown ones. */
export function mimeFor(format: string): string {
  return OUTPUT_FORMATS.get(format)?.mime ?? "application/octet-stream";
}
