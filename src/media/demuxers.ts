/**
 * Input formats: every demuxer ffmpeg 5.1 and 7.0 report (`ffmpeg -demuxers`, devices included),
 * each either allowed or denied with its reason. Allowed: every container and elementary-stream
 * format. Denied: whatever can open another file, a URL or a device, or make media from a script,
 * and, as a matter of service, still images and subtitle-only formats. The allowed list becomes
 * the `-format_whitelist` of every ffmpeg and ffprobe run on an upload; a demuxer in neither list
 * fails the unit test, so a newer ffmpeg cannot widen what is read without a decision here.
 *
 * @module
 */

/** One group of denied demuxers and why they are refused. */
interface Denial {
  reason: string;
  /** Names as `ffmpeg -demuxers` prints them. */
  names: readonly string[];
}

const STILL_IMAGE = "a still image, not a video";
const SUBTITLES = "subtitles only: no audio or video to process";

// deno-fmt-ignore
const DENIALS: readonly Denial[] = [
  {
    reason: "a playlist or manifest: opens the files or URLs it lists",
    names: ["concat", "dash", "hls", "imf", "webm_dash_manifest"],
  },
  {
    reason: "a clip split over files: opens its sibling chunks (.M00, .M01, …) by name",
    names: ["mlv"],
  },
  {
    reason: "an image file pattern: reads other files named like the upload",
    names: ["image2", "alias_pix", "brender_pix"],
  },
  {
    reason: "a network session: connects to the addresses it names",
    names: ["rtp", "rtsp", "sap", "sdp"],
  },
  { reason: "ffmpeg's metadata text: tags and chapters, no media", names: ["ffmetadata"] },
  {
    reason: "a filter graph: makes media from text and can open files (movie=) and devices",
    names: ["lavfi"],
  },
  { reason: "a synthesis script (SBaGen): sound made from text, no media in it", names: ["sbg"] },
  {
    reason: "a script that runs code and opens files (AviSynth, VapourSynth)",
    names: ["avisynth", "vapoursynth"],
  },
  {
    reason: "game-console music: runs the upload's code in an emulated CPU (libgme)",
    names: ["libgme"],
  },
  {
    reason: "a capture device of the server, not a file",
    names: [
      "alsa", "fbdev", "iec61883", "jack", "kmsgrab", "libcdio", "libdc1394", "openal", "oss",
      "pulse", "video4linux2,v4l2", "x11grab",
      // Not in the builds checked here: other platforms' devices, named so none slips in.
      "android_camera", "avfoundation", "bktr", "decklink", "dshow", "dv1394", "gdigrab", "sndio",
      "vfwcap",
    ],
  },
  {
    reason: "a DVD's folder structure: opens the IFO and VOB files it names",
    names: ["dvdvideo"], // ffmpeg 7.1 and later
  },
  {
    reason: STILL_IMAGE,
    names: [
      "image2pipe", "bmp_pipe", "cri_pipe", "dds_pipe", "dpx_pipe", "exr_pipe", "gem_pipe",
      "gif_pipe", "hdr_pipe", "j2k_pipe", "jpeg_pipe", "jpegls_pipe", "jpegxl_pipe", "pam_pipe",
      "pbm_pipe", "pcx_pipe", "pfm_pipe", "pgm_pipe", "pgmyuv_pipe", "pgx_pipe", "phm_pipe",
      "photocd_pipe", "pictor_pipe", "png_pipe", "ppm_pipe", "psd_pipe", "qdraw_pipe", "qoi_pipe",
      "sgi_pipe", "sunrast_pipe", "svg_pipe", "tiff_pipe", "vbn_pipe", "webp_pipe", "xbm_pipe",
      "xpm_pipe", "xwd_pipe",
      // Image formats with a demuxer of their own: icons, textures, astronomy and paint files.
      "fits", "frm", "ico", "msp", "txd",
    ],
  },
  {
    reason: SUBTITLES,
    names: [
      "aqtitle", "ass", "dvbsub", "dvbtxt", "jacosub", "lrc", "mcc", "microdvd", "mpl2", "mpsub",
      "pjs", "realtext", "sami", "scc", "srt", "stl", "subviewer", "subviewer1", "sup",
      "tedcaptions", "vplayer", "webvtt",
    ],
  },
  { reason: `${SUBTITLES}; opens the .sub file beside the .idx`, names: ["vobsub"] },
  {
    // tty turns a long plain text named .txt, .nfo, .ice, … into a video of its characters.
    reason: "text or text-mode art rendered as pictures: not a video",
    names: ["tty", "bin", "adf", "idf", "xbin"],
  },
];

/** Demuxers ffmpeg may never use on an upload, by name as ffmpeg prints it, with the reason. */
export const DENIED_DEMUXERS: ReadonlyMap<string, string> = new Map(
  DENIALS.flatMap(({ reason, names }) => names.map((name) => [name, reason] as const)),
);

/**
 * Demuxers ffmpeg may use on an upload, by name as ffmpeg prints it: every container and
 * elementary-stream format of ffmpeg 5.1 and 7.0 that is not denied. `apng`, `gif` and
 * `jpegxl_anim` are animations, not still images. MOV/MP4 could follow references to other
 * files; `inputArgs` keeps that off.
 */
// deno-fmt-ignore
export const ALLOWED_DEMUXERS: readonly string[] = [
  "3dostr", "4xm", "aa", "aac", "aax", "ac3", "ac4", "ace", "acm", "act", "adp", "ads", "adx",
  "aea", "afc", "aiff", "aix", "alaw", "alp", "amr", "amrnb", "amrwb", "anm", "apac", "apc", "ape",
  "apm", "apng", "aptx", "aptx_hd", "argo_asf", "argo_brp", "argo_cvg", "asf", "asf_o", "ast", "au",
  "av1", "avi", "avr", "avs", "avs2", "avs3", "bethsoftvid", "bfi", "bfstm", "bink", "binka", "bit",
  "bitpacked", "bmv", "boa", "bonk", "brstm", "c93", "caf", "cavsvideo", "cdg", "cdxl", "cine",
  "codec2", "codec2raw", "data", "daud", "dcstr", "derf", "dfa", "dfpwm", "dhav", "dirac", "dnxhd",
  "dsf", "dsicin", "dss", "dts", "dtshd", "dv", "dxa", "ea", "ea_cdata", "eac3", "epaf", "evc",
  "f32be", "f32le", "f64be", "f64le", "film_cpk", "filmstrip", "flac", "flic", "flv", "fsb", "fwse",
  "g722", "g723_1", "g726", "g726le", "g729", "gdv", "genh", "gif", "gsm", "gxf", "h261", "h263",
  "h264", "hca", "hcom", "hevc", "hnm", "iamf", "idcin", "iff", "ifv", "ilbc", "ingenient",
  "ipmovie", "ipu", "ircam", "iss", "iv8", "ivf", "ivr", "jpegxl_anim", "jv", "kux", "kvag", "laf",
  "libopenmpt", "live_flv", "lmlm4", "loas", "luodat", "lvf", "lxf", "m4v", "matroska,webm", "mca",
  "mgsts", "mjpeg", "mjpeg_2000", "mlp", "mm", "mmf", "mods", "moflex", "mov,mp4,m4a,3gp,3g2,mj2",
  "mp3", "mpc", "mpc8", "mpeg", "mpegts", "mpegtsraw", "mpegvideo", "mpjpeg", "msf", "msnwctcp",
  "mtaf", "mtv", "mulaw", "musx", "mv", "mvi", "mxf", "mxg", "nc", "nistsphere", "nsp", "nsv",
  "nut", "nuv", "obu", "ogg", "oma", "osq", "paf", "pdv", "pmp", "pp_bnk", "psxstr", "pva", "pvf",
  "qcp", "qoa", "r3d", "rawvideo", "redspark", "rka", "rl2", "rm", "roq", "rpl", "rsd", "rso",
  "s16be", "s16le", "s24be", "s24le", "s32be", "s32le", "s337m", "s8", "sbc", "scd", "sdns", "sdr2",
  "sds", "sdx", "ser", "sga", "shn", "siff", "simbiosis_imx", "sln", "smjpeg", "smk", "smush",
  "sol", "sox", "spdif", "svag", "svs", "swf", "tak", "thp", "tiertexseq", "tmv", "truehd", "tta",
  "ty", "u16be", "u16le", "u24be", "u24le", "u32be", "u32le", "u8", "usm", "v210", "v210x", "vag",
  "vc1", "vc1test", "vidc", "vividas", "vivo", "vmd", "voc", "vpk", "vqf", "vvc", "w64", "wady",
  "wav", "wavarc", "wc3movie", "wsaud", "wsd", "wsvqa", "wtv", "wv", "wve", "xa", "xmd", "xmv",
  "xvag", "xwma", "yop", "yuv4mpegpipe",
];

/** A demuxer's short name: the first of ffmpeg's comma list (`mov` for `mov,mp4,m4a,…`). */
export function shortName(demuxer: string): string {
  return demuxer.split(",")[0]!;
}

/**
 * The `-format_whitelist` value: the allowed demuxers' short names. ffmpeg accepts a demuxer when
 * any name of its comma list is on the whitelist (see {@linkcode matchesWhitelist}).
 */
export const FORMAT_WHITELIST: string = ALLOWED_DEMUXERS.map(shortName).join(",");

/**
 * Whether ffmpeg lets `demuxer` (a name or comma list of names) through `whitelist`: the rule of
 * libavutil's `av_match_list`, which `avformat_open_input` applies to the probed or forced format.
 */
export function matchesWhitelist(demuxer: string, whitelist: string = FORMAT_WHITELIST): boolean {
  const allowed = new Set(whitelist.split(",").filter(Boolean));
  return demuxer.split(",").some((name) => name !== "" && allowed.has(name));
}

/** Whether a demuxer, by name as ffmpeg prints it, is neither allowed nor denied. */
export function isUnclassified(demuxer: string): boolean {
  return !DENIED_DEMUXERS.has(demuxer) && !ALLOWED_DEMUXERS.includes(demuxer);
}

/**
 * The demuxer names in `ffmpeg -hide_banner -demuxers` output, as printed (`matroska,webm`).
 * Handles both layouts: two flag columns (ffmpeg 5.x) and three, with `d` for devices (7.x).
 */
export function parseDemuxerList(text: string): string[] {
  const lines = text.split("\n");
  const rule = lines.findIndex((line) => /^\s*-+\s*$/.test(line));
  if (rule < 0) throw new Error("Cannot read ffmpeg's demuxer list: no line of dashes");
  const flagWidth = lines[rule]!.trim().length;
  return lines.slice(rule + 1)
    .map((line) => line.slice(flagWidth + 2).trim().split(/\s+/)[0] ?? "")
    .filter((name) => name !== "");
}

/** The demuxers the given ffmpeg reports, devices included. */
export async function listDemuxers(ffmpeg: string): Promise<string[]> {
  const { success, stdout } = await new Deno.Command(ffmpeg, {
    args: ["-hide_banner", "-demuxers"],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  if (!success) throw new Error(`Cannot list demuxers: ${ffmpeg} -demuxers failed`);
  return parseDemuxerList(new TextDecoder().decode(stdout));
}
