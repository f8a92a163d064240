import { MmpError } from "./errors.ts";

/**
 * File extensions for each allowed input demuxer, keyed by the demuxer's short name (ffmpeg's
 * first name for it). Generated from ffmpeg 5.1 and 7.0: the extensions each demuxer declares
 * (`ffmpeg -h demuxer=NAME`) and those of the muxers whose output it reads (`-h muxer=NAME`), plus
 * common names ffmpeg lists nowhere (`rmvb`, `qt`, `divx`, `amv`, `ogm`, `nsv`, `smk`, `bik`,
 * `bk2`, `snd`, `cavs`). Left out: `avs`, which names AviSynth scripts far more often than AVS
 * video streams, and `ty+`, not a plain name. src/media/demuxers.ts decides which demuxers are
 * allowed; its test checks that this table names only those. The media type is a hint: ffprobe's
 * probe decides the demuxer, and a denied one is refused whatever the extension said.
 */
// deno-fmt-ignore
export const DEMUXER_EXTENSIONS: Readonly<Record<string, string>> = {
  "3dostr": "str", aa: "aa", aac: "aac adts", aax: "aax", ac3: "ac3", ac4: "ac4", acm: "acm",
  adp: "adp dtk", ads: "ads ss2", adx: "adx", aea: "aea", afc: "afc", aiff: "aif aiff afc aifc",
  aix: "aix", alaw: "al", alp: "tun pcm", amr: "amr", apac: "apc", ape: "ape apl mac", apm: "apm",
  apng: "apng", aptx: "aptx", aptx_hd: "aptxhd", argo_cvg: "cvg", asf: "asf wmv wma", ast: "ast",
  au: "au snd", av1: "obu", avi: "avi divx amv", avr: "avr", avs2: "avs2", avs3: "avs3",
  bfstm: "bfstm bcstm", bink: "bik bk2", binka: "binka", bit: "bit", bitpacked: "bitpacked",
  bmv: "bmv", bonk: "bonk", brstm: "brstm", caf: "caf", cavsvideo: "cavs", cdg: "cdg",
  cdxl: "cdxl xl", codec2: "c2", daud: "302 daud", dcstr: "str", derf: "adp", dfpwm: "dfpwm",
  dhav: "dav", dirac: "drc vc2", dnxhd: "dnxhd dnxhr", dss: "dss", dts: "dts", dtshd: "dtshd",
  dv: "dv dif", ea_cdata: "cdata", eac3: "eac3 ec3", epaf: "paf fap", evc: "evc", film_cpk: "cpk",
  filmstrip: "flm", flac: "flac", flv: "flv", fsb: "fsb", fwse: "fwse", g722: "g722 722",
  g723_1: "tco rco g723_1", g729: "g729", genh: "genh", gif: "gif", gsm: "gsm", gxf: "gxf",
  h261: "h261", h263: "h263", h264: "h26l h264 264 avc", hca: "hca", hevc: "hevc h265 265",
  iamf: "iamf", ifv: "ifv", ilbc: "lbc", ingenient: "cgi", ipu: "ipu", ircam: "sf ircam",
  ivf: "ivf", ivr: "ivr", jpegxl_anim: "jxl", kux: "kux", kvag: "vag", laf: "laf",
  libopenmpt:
    "669 amf ams dbm digi dmf dsm dtm far gdm ice imf it j2b m15 mdl med mmcmp mms mo3 mod mptm " +
    "mt2 mtm nst okt plm ppm psm pt36 ptm s3m sfx sfx2 st26 stk stm stp ult umx wow xm xpk",
  live_flv: "flv", loas: "latm loas", luodat: "dat", lvf: "lvf", m4v: "m4v",
  matroska: "mkv mk3d mka mks webm", mca: "mca", mjpeg: "mjpg mjpeg mpo", mjpeg_2000: "j2k",
  mlp: "mlp", mmf: "mmf", mods: "mods", moflex: "moflex",
  mov: "mov mp4 m4a 3gp 3g2 mj2 psp m4b ism ismv isma f4v avif heic heif m4v qt",
  mp3: "mp2 mp3 m2a mpa", mpc: "mpc", mpeg: "dvd mpg mpeg vob", mpegts: "ts m2t m2ts mts",
  mpegvideo: "mpg mpeg m1v m2v", mpjpeg: "mjpg", msf: "msf", mtaf: "mtaf", mulaw: "ul",
  musx: "musx", mvi: "mvi", mxf: "mxf", mxg: "mxg", nc: "v", nistsphere: "nist sph", nsp: "nsp",
  nsv: "nsv", nut: "nut", obu: "obu", ogg: "ogg oga ogv opus spx ogm", oma: "oma omg aa3",
  osq: "osq", pdv: "pdv", pvf: "pvf", qoa: "qoa", rawvideo: "yuv cif qcif rgb", redspark: "rsd",
  rka: "rka", rm: "rm ra rmvb", roq: "roq", rsd: "rsd", rso: "rso", s16le: "sw", s8: "sb",
  sbc: "sbc msbc", sdns: "sdns", sdr2: "sdr2", sds: "sds", sdx: "sdx", ser: "ser", sga: "sga",
  shn: "shn", siff: "vb son", simbiosis_imx: "imx", sln: "sln", smjpeg: "mjpg", smk: "smk",
  sox: "sox", spdif: "spdif", svag: "svag", svs: "svs", swf: "swf", tak: "tak", truehd: "thd",
  tta: "tta", ty: "ty", u16le: "uw", u8: "ub", usm: "usm", v210: "v210", v210x: "yuv10",
  vag: "vag", vc1: "vc1", vc1test: "rcv", vivo: "viv", voc: "voc", vpk: "vpk", vqf: "vqf vql vqe",
  vvc: "h266 266 vvc", w64: "w64", wady: "way", wav: "wav", wavarc: "wa", wsaud: "aud", wsd: "wsd",
  wtv: "wtv", wv: "wv", xmd: "xmd", xmv: "xmv", xvag: "xvag", yop: "yop", yuv4mpegpipe: "y4m",
};

/** Extensions the server accepts as input; the file on disk gets this extension. */
export const INPUT_EXTENSIONS: ReadonlySet<string> = new Set(
  Object.values(DEMUXER_EXTENSIONS).flatMap((list) => list.split(" ")),
);

/**
 * MIME types clients may send instead of an extension, with the extension each stands for: the
 * common ones, then those ffmpeg's muxers declare for formats an allowed demuxer reads. Not
 * `image/png` (ffmpeg's APNG muxer declares it, but it names still pictures).
 */
// deno-fmt-ignore
export const INPUT_MIME_TYPES: ReadonlyMap<string, string> = new Map(Object.entries({
  "video/mp4": "mp4", "video/x-m4v": "m4v", "video/quicktime": "mov", "video/x-matroska": "mkv",
  "video/webm": "webm", "video/x-msvideo": "avi", "video/avi": "avi", "video/msvideo": "avi",
  "video/x-flv": "flv", "video/mp2t": "ts", "video/3gpp": "3gp", "video/3gpp2": "3g2",
  "video/ogg": "ogv", "video/mpeg": "mpg", "video/x-ms-wmv": "wmv", "video/x-ms-asf": "asf",
  "application/mxf": "mxf", "video/dv": "dv", "audio/mpeg": "mp3", "audio/mp4": "m4a",
  "audio/wav": "wav", "audio/x-wav": "wav", "audio/flac": "flac", "audio/ogg": "ogg",
  "audio/opus": "opus", "image/gif": "gif",
  // More common ones.
  "image/apng": "apng", "audio/x-aiff": "aif", "audio/x-m4a": "m4a", "audio/webm": "webm",
  "audio/x-matroska": "mka", "audio/x-ms-wma": "wma", "audio/3gpp": "3gp", "audio/wave": "wav",
  "audio/vnd.wave": "wav", "audio/x-aac": "aac", "application/vnd.rn-realmedia-vbr": "rmvb",
  "audio/x-pn-realaudio": "ra", "video/x-dv": "dv", "video/h264": "h264", "video/h265": "hevc",
  // Declared by ffmpeg's muxers.
  "audio/x-ac3": "ac3", "audio/ac4": "ac4", "audio/aac": "aac", "audio/aiff": "aif",
  "audio/amr": "amr", "audio/basic": "au", "image/avif": "avif", "audio/bit": "bit",
  "audio/x-caf": "caf", "audio/x-dca": "dts", "audio/x-eac3": "eac3", "application/f4v": "f4v",
  "audio/x-flac": "flac", "audio/g722": "g722", "audio/g723": "tco", "audio/x-gsm": "gsm",
  "video/x-h261": "h261", "video/x-h263": "h263", "audio/ilbc": "lbc", "audio/mp4a-latm": "latm",
  "video/x-mjpeg": "mjpg", "application/vnd.smaf": "mmf", "multipart/x-mixed-replace": "mjpg",
  "video/x-nut": "nut", "application/ogg": "ogg", "audio/x-oma": "oma",
  "application/vnd.rn-realmedia": "rm", "audio/x-sbc": "sbc",
  "application/x-shockwave-flash": "swf", "audio/x-tta": "tta", "audio/x-voc": "voc",
  "audio/x-wavpack": "wv",
}));

/** MIME type of each output format the server produces. */
export const OUTPUT_MIME: Readonly<Record<string, string>> = {
  mp3: "audio/mpeg",
  mp4: "video/mp4",
  gif: "image/gif",
  webm: "video/webm",
};

/**
 * The file extension for a request's media type (`mp4`, `.MP4` or `video/mp4; codecs=…`), checked
 * against the allow-list. Throws `UNSUPPORTED_MEDIA` for anything else.
 *
 * @example
 * ```ts
 * normalizeMediaType("video/quicktime"); // "mov"
 * ```
 */
export function normalizeMediaType(mediaType: string): string {
  const lower = mediaType.trim().toLowerCase();
  const extension = INPUT_MIME_TYPES.get(lower.split(";")[0]!.trim()) ??
    (lower.startsWith(".") ? lower.slice(1) : lower);
  if (INPUT_EXTENSIONS.has(extension)) return extension;
  const shown = /^[\x20-\x7e]{1,32}$/.test(mediaType) ? `"${mediaType}"` : "this media type";
  throw new MmpError("UNSUPPORTED_MEDIA", `The server does not accept ${shown} as input`, {
    // The full list has some 300 names; the common ones say what is meant.
    solution:
      "Send the file's usual extension (mp4, mkv, mov, webm, avi, mpg, ts, mxf, mp3, m4a, " +
      "wav, flac, ogg, …) or its MIME type; playlists, scripts, still images and subtitles are " +
      "not accepted",
  });
}
