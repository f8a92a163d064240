// The mmp web page: pick files and an operation, send them one by one, show progress and results.
// Plain ES module, no dependencies; the server's CSP allows only this file as script.

/** The operations this page has controls for, in menu order. */
const OPS = ["compress", "resize", "aspect", "audio", "clip", "convert"];

/** One sentence per operation, under the menu. */
const OP_HELP = {
  compress:
    "Makes the file smaller while keeping it looking the same. The size and format of the " +
    "picture do not change.",
  resize: "Changes the number of pixels, for example to make a 4K video easy to share or to " +
    "upscale a small one.",
  aspect: "Changes the shape of the frame, for example a phone video for a widescreen player.",
  audio: "Keeps only the sound track, for music, podcasts or transcripts.",
  clip: "Cuts a part out of the video, for a looping GIF or a short clip to share.",
  convert: "Changes the file format so that another player, editor or website accepts it.",
};

/** Used when the server's `/api/info` does not list formats for an operation. */
// deno-fmt-ignore
const FALLBACK_FORMATS = {
  compress: [], resize: [], aspect: [],
  audio: ["mp3", "m4a", "opus", "flac", "wav"],
  clip: ["gif", "webm", "mp4", "apng", "webp"],
  convert: ["mp4", "webm", "mkv", "mov", "gif", "mp3", "m4a", "opus", "flac", "wav"],
};

/** The format each operation starts with; `""` keeps the input's format. */
const DEFAULT_FORMAT = {
  compress: "",
  resize: "",
  aspect: "",
  audio: "mp3",
  clip: "gif",
  convert: "mp4",
};

/** Operations that take `strip_metadata`, when the server does not list its arguments. */
const STRIP_OPS = ["compress", "resize", "aspect", "convert"];

/** Operations whose default output keeps the input's format. */
const KEEP_FORMAT_OPS = new Set(["compress", "resize", "aspect"]);

/** Output formats that are silent animations, limited in length. */
const ANIMATIONS = new Set(["gif", "apng", "webp"]);

const KIND_LABELS = { video: "Video", animation: "Animation", audio: "Sound only" };

/** Plain-words descriptions of output formats, when the server gives no codecs. */
const FORMAT_TEXT = {
  mp4: "MP4: plays almost everywhere (H.264 + AAC)",
  m4v: "M4V: MP4 for Apple devices",
  mov: "MOV: QuickTime, for Apple apps and editors",
  mkv: "MKV: Matroska, holds almost any codec",
  webm: "WebM: open format for the web (VP9 + Opus)",
  avi: "AVI: older Windows players",
  gif: "GIF: a silent looping picture, plays anywhere, large files",
  apng: "Animated PNG: a silent loop with full colours",
  webp: "Animated WebP: a silent loop, much smaller than GIF",
  mp3: "MP3: plays on every device",
  m4a: "M4A: AAC sound, good for Apple devices",
  aac: "AAC: raw AAC sound",
  opus: "Opus: the smallest files for the same sound",
  ogg: "Ogg Vorbis: open sound format",
  flac: "FLAC: lossless, exact copy of the sound, large",
  wav: "WAV: uncompressed, for editors, very large",
};

// deno-fmt-ignore
const CODEC_NAMES = {
  h264: "H.264", hevc: "HEVC (H.265)", av1: "AV1", vp9: "VP9", vp8: "VP8", aac: "AAC", mp3: "MP3",
  opus: "Opus", vorbis: "Vorbis", flac: "FLAC", gif: "GIF", apng: "APNG", webp: "WebP",
};

const AUDIO_EXT = new Set(["mp3", "m4a", "aac", "opus", "ogg", "oga", "flac", "wav"]);
const IMAGE_EXT = new Set(["gif", "apng", "png", "webp"]);

// deno-fmt-ignore
const STATE_LABELS = {
  waiting: "Waiting", uploading: "Uploading", queued: "Queued", running: "Processing",
  downloading: "Downloading", done: "Done", failed: "Failed", cancelled: "Cancelled",
};

const $ = (selector, root = document) => root.querySelector(selector);

const form = $("#job-form");
const fileInput = $("#file");
const drop = $("#drop");
const picked = $("#picked");
const opSelect = $("#op");
const formatSelect = $("#format");
const preview = $("#preview");
const startInput = $("#start");
const endInput = $("#end");
const jobList = $("#jobs");

/** What the server said it can do, normalised; filled by {@link loadInfo}. */
const server = {
  ops: OPS,
  formats: { ...FALLBACK_FORMATS },
  /** Output formats by name: `{ format, kind, video_codec, audio_codec }`. */
  outputs: new Map(),
  limits: {},
  maxGifSeconds: 60,
  /** Operations that take `strip_metadata`. */
  stripOps: STRIP_OPS,
};

/** The format the user picked per operation, kept while switching operations. */
const chosenFormat = { ...DEFAULT_FORMAT };

/** Jobs in page order. */
const jobs = [];
let pumping = false;
let previewUrl = "";

// ---------------------------------------------------------------------------------------------
// Small helpers

function formatBytes(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return "?";
  if (bytes < 1000) return `${bytes} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = -1;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value < 10 ? Number(value.toFixed(1)) : Math.round(value)} ${units[unit]}`;
}

function formatSeconds(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  if (seconds < 3600) {
    const m = Math.floor(seconds / 60);
    const s = Math.round(seconds % 60);
    return s ? `${m} min ${s} s` : `${m} min`;
  }
  const h = Math.floor(seconds / 3600);
  const m = Math.round((seconds % 3600) / 60);
  return m ? `${h} h ${m} min` : `${h} h`;
}

function percent(fraction) {
  return `${Math.floor(Math.max(0, Math.min(1, fraction)) * 100)} %`;
}

function extensionOf(name) {
  const match = /\.([A-Za-z0-9]{1,8})$/.exec(name ?? "");
  return match ? match[1].toLowerCase() : "";
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function delay(ms, signal) {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(cancelledError());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** An error as the server words it: `{ code, description, solution }`. */
class JobError extends Error {
  constructor(code, description, solution) {
    super(description);
    this.code = code;
    this.description = description;
    this.solution = solution ?? "";
  }
}

function cancelledError() {
  return new JobError("CANCELLED", "Cancelled", "");
}

/** The server's error from an answer body, a job object or anything else. */
function toJobError(body, status) {
  const source = body && typeof body === "object" && body.error && typeof body.error === "object"
    ? body.error
    : body;
  if (source && typeof source === "object" && typeof source.description === "string") {
    return new JobError(String(source.code ?? "ERROR"), source.description, source.solution);
  }
  if (body && typeof body === "object" && typeof body.error === "string") {
    return new JobError("ERROR", body.error, "");
  }
  return new JobError(
    "HTTP",
    status ? `The server answered with HTTP status ${status}` : "The server could not be reached",
    "Check your connection and try again in a minute",
  );
}

// ---------------------------------------------------------------------------------------------
// What the server offers: GET /api/info

function formatName(entry) {
  if (typeof entry === "string") return entry.toLowerCase();
  if (entry && typeof entry === "object") {
    const name = entry.format ?? entry.extension ?? entry.ext ?? entry.name;
    return typeof name === "string" ? name.toLowerCase() : "";
  }
  return "";
}

function formatNames(list) {
  return Array.isArray(list) ? [...new Set(list.map(formatName).filter(Boolean))] : [];
}

async function loadInfo() {
  let info;
  try {
    const response = await fetch("/api/info", { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    info = await response.json();
  } catch {
    return;
  }
  if (!info || typeof info !== "object") return;

  if (Array.isArray(info.output_formats)) {
    for (const entry of info.output_formats) {
      const name = formatName(entry);
      if (name) server.outputs.set(name, typeof entry === "object" ? entry : { format: name });
    }
  }

  const ops = info.operations;
  const listed = new Map();
  if (Array.isArray(ops)) {
    for (const entry of ops) {
      const name = typeof entry === "string" ? entry : entry?.name ?? entry?.op;
      if (typeof name === "string") listed.set(name, typeof entry === "object" ? entry : {});
    }
  } else if (ops && typeof ops === "object") {
    for (const [name, entry] of Object.entries(ops)) listed.set(name, entry ?? {});
  }
  if (listed.size > 0) {
    const known = OPS.filter((op) => listed.has(op));
    if (known.length > 0) server.ops = known;
  }
  for (const [op, entry] of listed) {
    if (!entry || typeof entry !== "object") continue;
    const formats = formatNames(entry.formats ?? entry.output_formats);
    if (formats.length > 0) server.formats[op] = formats;
    if (typeof entry.default_format === "string" && entry.default_format) {
      chosenFormat[op] = entry.default_format.toLowerCase();
    }
  }
  // An info that names `strip_metadata` for some operation says exactly which take it.
  const strip = [...listed].filter(([, entry]) =>
    entry && typeof entry === "object" && "strip_metadata" in entry
  );
  if (strip.length > 0) server.stripOps = strip.map(([op]) => op);
  if (!server.formats.convert?.length || server.formats.convert === FALLBACK_FORMATS.convert) {
    const all = formatNames(info.output_formats);
    if (all.length > 0) server.formats.convert = all;
  }

  const inputs = formatNames(info.input_formats);
  const mimes = Array.isArray(info.input_formats)
    ? info.input_formats.map((entry) => entry?.mime).filter((m) => typeof m === "string")
    : [];
  if (inputs.length > 0) {
    fileInput.accept = [...inputs.map((ext) => `.${ext}`), ...new Set(mimes)].join(",");
  }

  if (info.limits && typeof info.limits === "object") server.limits = info.limits;
  const animation = Number(server.limits.max_animation_seconds ?? server.limits.max_gif_seconds);
  if (animation > 0) server.maxGifSeconds = animation;
  describeServer(info);
  applyOps();
  showOptions();
}

function describeServer(info) {
  const limits = server.limits;
  const parts = [];
  if (Number(limits.max_upload_bytes) > 0) {
    parts.push(`files up to ${formatBytes(Number(limits.max_upload_bytes))}`);
  }
  if (Number(limits.max_pixels) > 0) {
    parts.push(`frames up to ${(Number(limits.max_pixels) / 1e6).toFixed(1)} megapixels`);
  }
  if (Number(limits.max_duration_seconds) > 0) {
    parts.push(`media up to ${formatSeconds(Number(limits.max_duration_seconds))}`);
  }
  if (Number(limits.max_job_seconds) > 0) {
    parts.push(`processing up to ${formatSeconds(Number(limits.max_job_seconds))} per file`);
  }
  const version = typeof info.version === "string" || typeof info.version === "number"
    ? ` ${info.version}`
    : "";
  const limitText = parts.length ? ` This server takes ${parts.join(", ")}.` : "";
  $("#server-info").textContent = `Self-hosted with mmp${version}.${limitText}`;
  if (Number(limits.max_upload_bytes) > 0) {
    $("#limits").textContent = `Videos, sound files and GIFs up to ${
      formatBytes(Number(limits.max_upload_bytes))
    } each. Several at once are sent one after another.`;
  }
}

function applyOps() {
  for (const option of [...opSelect.options]) {
    if (!server.ops.includes(option.value)) option.remove();
  }
}

// ---------------------------------------------------------------------------------------------
// The form

function formatLabel(name) {
  const output = server.outputs.get(name);
  const codecs = [output?.video_codec, output?.audio_codec]
    .filter((c) => typeof c === "string" && c)
    .map((c) => CODEC_NAMES[c] ?? c);
  if (FORMAT_TEXT[name]) return FORMAT_TEXT[name];
  return codecs.length ? `${name.toUpperCase()} (${codecs.join(" + ")})` : name.toUpperCase();
}

function fillFormats(op) {
  const formats = server.formats[op] ?? [];
  const keepInput = KEEP_FORMAT_OPS.has(op);
  formatSelect.replaceChildren();
  if (keepInput) {
    formatSelect.append(
      new Option("Same as the input, when it can hold the result (else MP4)", ""),
    );
  }
  // Grouped by kind (video, animation, sound) when the server says which is which.
  const groups = new Map();
  for (const name of formats) {
    const kind = server.outputs.get(name)?.kind;
    const label = KIND_LABELS[kind] ?? "";
    if (!groups.has(label)) groups.set(label, []);
    groups.get(label).push(new Option(formatLabel(name), name));
  }
  for (const [label, options] of groups) {
    if (label && groups.size > 1) {
      const group = document.createElement("optgroup");
      group.label = label;
      group.append(...options);
      formatSelect.append(group);
    } else {
      formatSelect.append(...options);
    }
  }
  const wanted = chosenFormat[op];
  const values = [...formatSelect.options].map((o) => o.value);
  formatSelect.value = values.includes(wanted) ? wanted : (values[0] ?? "");
  $("#format-field").hidden = formatSelect.options.length <= 1 && keepInput;
  describeFormat();
}

function describeFormat() {
  const op = opSelect.value;
  const format = formatSelect.value;
  let text = "";
  if (op === "clip" && ANIMATIONS.has(format)) {
    text = `Animations are silent, at most ${server.maxGifSeconds} s long, and best under 10 s.`;
  } else if (op === "audio") {
    text = "The sound is copied when the format allows it, else re-encoded at high quality.";
  } else if (op === "convert" && ANIMATIONS.has(format)) {
    text = "An animated picture has no sound; for long videos use Clip to pick a part.";
  } else if (format === "") {
    text = "MP4, MOV and MKV stay as they are (H.264), WebM stays WebM (VP9), others become MP4.";
  }
  $("#format-help").textContent = text;
}

function showOptions() {
  const op = opSelect.value;
  for (const fieldset of form.querySelectorAll("fieldset.options")) {
    const active = fieldset.dataset.op === op;
    fieldset.hidden = !active;
    fieldset.disabled = !active;
  }
  $("#op-help").textContent = OP_HELP[op] ?? "";
  const strip = $("#strip-field");
  strip.hidden = !server.stripOps.includes(op);
  strip.querySelector("input").disabled = strip.hidden;
  fillFormats(op);
  updateClipLength();
}

function showExactSize() {
  $("#exact-size").hidden = $("#resolution").value !== "exact";
}

function showCustomAspect() {
  $("#aspect-custom-field").hidden = $("#aspect").value !== "custom";
}

function showPicked() {
  const files = [...fileInput.files];
  if (files.length === 0) {
    picked.textContent = "";
  } else if (files.length === 1) {
    picked.textContent = `${files[0].name} (${formatBytes(files[0].size)})`;
  } else {
    const total = files.reduce((sum, f) => sum + f.size, 0);
    const names = files.slice(0, 3).map((f) => f.name).join(", ");
    const more = files.length > 3 ? ` and ${files.length - 3} more` : "";
    picked.textContent = `${files.length} files, ${formatBytes(total)}: ${names}${more}`;
  }
  $("button[type=submit]").textContent = files.length > 1 ? `Start ${files.length} files` : "Start";
  $("#clip-many").hidden = files.length < 2;
  loadPreview(files[0]);
  setMessage("");
}

function loadPreview(file) {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = "";
  $("#clip-unplayable").hidden = true;
  if (!file) {
    preview.removeAttribute("src");
    preview.load();
    preview.hidden = true;
    $("#clip-empty").hidden = false;
    return;
  }
  previewUrl = URL.createObjectURL(file);
  preview.src = previewUrl;
  preview.hidden = false;
  $("#clip-empty").hidden = true;
}

function roundTime(seconds) {
  return String(Number(seconds.toFixed(2)));
}

function updateClipLength() {
  const start = Number(startInput.value);
  const end = Number(endInput.value);
  const out = $("#clip-length");
  if (!Number.isFinite(start) || !Number.isFinite(end) || startInput.value === "" || end <= start) {
    out.textContent = "The end must come after the start.";
    return;
  }
  const length = end - start;
  const tooLong = ANIMATIONS.has(formatSelect.value) && length > server.maxGifSeconds;
  out.textContent = `Clip length: ${roundTime(length)} s` +
    (tooLong ? ` (too long for an animation: at most ${server.maxGifSeconds} s)` : "");
}

function setMessage(text) {
  $("#form-message").textContent = text;
}

/** The query arguments of the current form, or an error message. */
function jobArguments() {
  const op = opSelect.value;
  const args = new URLSearchParams({ op });
  const format = formatSelect.value;
  if (op === "compress") {
    args.set("quality", form.elements.quality.value || "balanced");
  } else if (op === "resize") {
    const preset = $("#resolution").value;
    if (preset === "exact") {
      const width = Number($("#width").value);
      const height = Number($("#height").value);
      const ok = (n) => Number.isInteger(n) && n >= 16 && n <= 7680 && n % 2 === 0;
      if (!ok(width) || !ok(height)) {
        return { error: "Width and height must be even numbers from 16 to 7680." };
      }
      args.set("resolution", `${width}x${height}`);
    } else {
      args.set("resolution", preset);
    }
  } else if (op === "aspect") {
    let ratio = $("#aspect").value;
    if (ratio === "custom") {
      ratio = $("#aspect-custom").value.trim();
      if (!/^\d{1,4}:\d{1,4}$/.test(ratio) || /(^0+:)|(:0+$)/.test(ratio)) {
        return { error: "Write the ratio as width:height, for example 3:2." };
      }
    }
    args.set("aspect", ratio);
    args.set("mode", form.elements.mode.value || "pad");
  } else if (op === "clip") {
    const start = Number(startInput.value);
    const end = Number(endInput.value);
    if (startInput.value === "" || !Number.isFinite(start) || start < 0) {
      return { error: "Set the start of the clip, in seconds." };
    }
    if (endInput.value === "" || !Number.isFinite(end) || end <= start) {
      return { error: "The end of the clip must come after its start." };
    }
    if (ANIMATIONS.has(format) && end - start > server.maxGifSeconds) {
      return {
        error: `An animation may be at most ${server.maxGifSeconds} s long; pick WebM or MP4.`,
      };
    }
    args.set("start", String(start));
    args.set("end", String(end));
  }
  if (format) args.set("format", format);
  const strip = form.elements.strip_metadata;
  if (strip && !strip.disabled && strip.checked) args.set("strip_metadata", "true");
  return { args };
}

function describeOp(args) {
  const op = args.get("op");
  const format = args.get("format");
  const to = format ? ` → ${format.toUpperCase()}` : "";
  switch (op) {
    case "compress":
      return `Compress, ${args.get("quality")} quality${to}`;
    case "resize":
      return `Resize to ${args.get("resolution")}${to}`;
    case "aspect":
      return `Aspect ${args.get("aspect")}, ${args.get("mode")}${to}`;
    case "audio":
      return `Sound only${to}`;
    case "clip":
      return `Clip ${args.get("start")}–${args.get("end")} s${to}`;
    case "convert":
      return `Convert${to}`;
    default:
      return op ?? "";
  }
}

function onSubmit(event) {
  event.preventDefault();
  const files = [...fileInput.files];
  if (files.length === 0) {
    setMessage("Choose or drop at least one file first.");
    fileInput.focus();
    return;
  }
  const { args, error } = jobArguments();
  if (error) {
    setMessage(error);
    return;
  }
  setMessage("");
  for (const file of files) addJob(file, args);
  fileInput.value = "";
  showPicked();
  pump();
}

// ---------------------------------------------------------------------------------------------
// Jobs: one row each, sent one after another

function addJob(file, args) {
  const row = $("#job-template").content.firstElementChild.cloneNode(true);
  const job = {
    file,
    args: new URLSearchParams(args),
    row,
    state: "waiting",
    id: "",
    xhr: null,
    controller: new AbortController(),
    cancelling: null,
    url: "",
    runStart: 0,
    runProgress: 0,
  };
  job.args.set("name", file.name);
  $(".job-name", row).textContent = file.name;
  $(".job-op", row).textContent = `${describeOp(job.args)} · ${formatBytes(file.size)}`;
  const cancel = $(".cancel", row);
  cancel.setAttribute("aria-label", `Cancel ${file.name}`);
  cancel.addEventListener("click", () => cancelJob(job));
  jobs.push(job);
  jobList.append(row);
  $("#jobs-empty").hidden = true;
  setState(job, "waiting", "Waiting for the files before it");
  return job;
}

function setState(job, state, text, progress) {
  // Screen readers hear each change of stage once, not every progress step.
  if (job.state !== state || job.row.dataset.state === undefined) {
    $("#announce").textContent = `${job.file.name}: ${STATE_LABELS[state] ?? state}`;
  }
  job.state = state;
  const row = job.row;
  row.dataset.state = state;
  const badge = $(".badge", row);
  badge.textContent = STATE_LABELS[state] ?? state;
  const bar = $("progress", row);
  if (progress === undefined || progress === null) {
    bar.removeAttribute("value");
  } else {
    bar.value = Math.max(0, Math.min(1, progress));
  }
  const label = `${STATE_LABELS[state] ?? state}: ${text}`;
  bar.setAttribute("aria-label", `${job.file.name}: ${label}`);
  $(".job-status", row).textContent = text;
  const finished = state === "done" || state === "failed" || state === "cancelled";
  $(".cancel", row).hidden = finished;
  $(".job-progress", row).hidden = finished;
  updateToolbar();
}

function updateToolbar() {
  $("#download-all").disabled = !jobs.some((j) => j.state === "done");
  $("#clear").disabled = !jobs.some((j) => ["done", "failed", "cancelled"].includes(j.state));
}

async function pump() {
  if (pumping) return;
  pumping = true;
  try {
    for (let job; (job = jobs.find((j) => j.state === "waiting"));) await runJob(job);
  } finally {
    pumping = false;
  }
}

async function runJob(job) {
  const limit = Number(server.limits.max_upload_bytes);
  if (limit > 0 && job.file.size > limit) {
    showError(
      job,
      new JobError(
        "TOO_LARGE",
        `This file (${formatBytes(job.file.size)}) is larger than the server accepts`,
        `Send a file of at most ${formatBytes(limit)}, or split it and send the parts`,
      ),
    );
    return;
  }
  try {
    const accepted = await uploadUntilAccepted(job);
    job.id = String(accepted.job);
    showStatus(job, accepted);
    const finished = await follow(job);
    const blob = await downloadResult(job, finished);
    showResult(job, finished, blob);
  } catch (error) {
    if (job.controller.signal.aborted) {
      await job.cancelling;
      setState(job, "cancelled", "Cancelled", 0);
    } else {
      showError(job, error instanceof JobError ? error : toJobError(null, 0));
      if (job.id) await fetch(`/api/jobs/${job.id}`, { method: "DELETE" }).catch(() => {});
    }
  }
}

function cancelJob(job) {
  if (job.state === "waiting") {
    job.controller.abort();
    setState(job, "cancelled", "Cancelled before it was sent", 0);
    return;
  }
  if (job.controller.signal.aborted) return;
  job.controller.abort();
  job.xhr?.abort();
  job.cancelling = job.id
    ? fetch(`/api/jobs/${encodeURIComponent(job.id)}`, { method: "DELETE" }).catch(() => {})
    : Promise.resolve();
  $(".job-status", job.row).textContent = "Cancelling…";
}

/** Sends the file; retries for a while when the server is still busy with this address's last job. */
async function uploadUntilAccepted(job) {
  const deadline = performance.now() + 30_000;
  for (let attempt = 0;; attempt++) {
    try {
      return await upload(job);
    } catch (error) {
      const busy = error instanceof JobError && error.code === "BUSY";
      if (!busy || job.controller.signal.aborted || performance.now() > deadline) throw error;
      setState(job, "waiting", "The server is finishing your previous job; trying again soon");
      await delay(Math.min(5000, 500 * 2 ** attempt), job.controller.signal);
    }
  }
}

function upload(job) {
  return new Promise((resolve, reject) => {
    if (job.controller.signal.aborted) return reject(cancelledError());
    const xhr = new XMLHttpRequest();
    job.xhr = xhr;
    const total = job.file.size;
    const started = performance.now();
    xhr.open("POST", `/api/jobs?${job.args}`);
    xhr.setRequestHeader("Content-Type", job.file.type || "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (event) => {
      const size = event.lengthComputable ? event.total : total;
      const fraction = size > 0 ? event.loaded / size : 0;
      const seconds = (performance.now() - started) / 1000;
      const rate = seconds > 0.5 ? event.loaded / seconds : 0;
      const left = rate > 0 && fraction < 1
        ? `, about ${formatSeconds((size - event.loaded) / rate)} left`
        : "";
      const text = fraction >= 1
        ? "Uploaded; the server is checking the file"
        : `${percent(fraction)}, ${formatBytes(event.loaded)} of ${formatBytes(size)}${left}`;
      setState(job, "uploading", text, fraction);
    });
    xhr.addEventListener("load", () => {
      job.xhr = null;
      const body = parseJson(xhr.responseText);
      if (xhr.status >= 200 && xhr.status < 300 && body && body.job !== undefined) resolve(body);
      else reject(toJobError(body, xhr.status));
    });
    xhr.addEventListener("error", () => {
      job.xhr = null;
      reject(
        new JobError(
          "NETWORK",
          "The upload was interrupted before the server answered",
          "Check your connection and that the file is not too large, then send it again",
        ),
      );
    });
    xhr.addEventListener("abort", () => {
      job.xhr = null;
      reject(cancelledError());
    });
    setState(job, "uploading", `0 %, 0 B of ${formatBytes(total)}`, 0);
    xhr.send(job.file);
  });
}

function isFinal(data) {
  return data && typeof data === "object" && (data.result || data.error ||
    ["done", "finished", "failed", "error", "cancelled", "canceled"].includes(data.state));
}

/** Follows the job with server-sent events (or polling) until it has a result; rejects on error. */
function follow(job) {
  const signal = job.controller.signal;
  return new Promise((resolve, reject) => {
    const finish = (data) => {
      if (data?.result) return resolve(data);
      if (data?.state === "cancelled" || data?.state === "canceled") {
        return reject(cancelledError());
      }
      reject(toJobError(data, 0));
    };
    if (typeof EventSource !== "function") return poll(job).then(resolve, reject);
    const events = new EventSource(`/api/jobs/${encodeURIComponent(job.id)}/events`);
    const stop = () => events.close();
    signal.addEventListener("abort", () => {
      stop();
      reject(cancelledError());
    }, { once: true });
    const onStatus = (event) => {
      const data = parseJson(event.data);
      if (!data) return;
      if (isFinal(data)) {
        stop();
        finish(data);
      } else {
        showStatus(job, data);
      }
    };
    events.addEventListener("status", onStatus);
    events.addEventListener("message", onStatus);
    events.addEventListener("result", (event) => {
      stop();
      const data = parseJson(event.data) ?? {};
      resolve(data.result ? data : { result: data });
    });
    events.addEventListener("error", (event) => {
      stop();
      if (typeof event.data === "string" && event.data) {
        const data = parseJson(event.data);
        if (data?.state === "cancelled" || data?.code === "CANCELLED") {
          return reject(signal.aborted ? cancelledError() : toJobError(data, 0));
        }
        return reject(toJobError(data, 0));
      }
      // The stream broke (a proxy, a restart): ask for the job's state instead.
      if (!signal.aborted) poll(job).then(resolve, reject);
    });
  });
}

async function poll(job) {
  const signal = job.controller.signal;
  for (;;) {
    let response;
    try {
      response = await fetch(`/api/jobs/${encodeURIComponent(job.id)}`, { signal });
    } catch (error) {
      if (signal.aborted) throw cancelledError();
      throw error instanceof JobError ? error : toJobError(null, 0);
    }
    const body = parseJson(await response.text());
    if (!response.ok) throw toJobError(body, response.status);
    if (isFinal(body)) {
      if (body.result) return body;
      throw toJobError(body, 0);
    }
    showStatus(job, body ?? {});
    await delay(1000, signal);
  }
}

function showStatus(job, data) {
  const state = data.state === "processing" ? "running" : data.state;
  if (state === "running") {
    let progress = Number(data.progress);
    if (!Number.isFinite(progress)) progress = 0;
    if (progress > 1) progress /= 100;
    const now = performance.now();
    if (!job.runStart) {
      job.runStart = now;
      job.runProgress = progress;
    }
    const done = progress - job.runProgress;
    const elapsed = now - job.runStart;
    let left = "";
    if (done > 0.01 && elapsed > 1500 && progress < 1) {
      left = `, about ${formatSeconds(((1 - progress) * elapsed) / done / 1000)} left`;
    }
    setState(job, "running", `${percent(progress)}${left}`, progress);
  } else {
    const position = Number(data.queue_position);
    const text = position >= 1 ? `Waiting in the server's queue, place ${position}` : "Starting";
    setState(job, "queued", text);
  }
}

function resultName(job, finished, response) {
  const name = finished.result?.name;
  if (typeof name === "string" && name) return name;
  const disposition = response.headers.get("Content-Disposition") ?? "";
  const star = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  if (star) {
    try {
      return decodeURIComponent(star[1]);
    } catch { /* fall through */ }
  }
  const plain = /filename="?([^";]+)"?/i.exec(disposition);
  if (plain) return plain[1];
  return job.file.name;
}

/** Fetches the result once (it is deleted after one complete download) as a blob. */
async function downloadResult(job, finished) {
  const signal = job.controller.signal;
  setState(job, "downloading", "Starting the download", 0);
  let response;
  try {
    response = await fetch(`/api/jobs/${encodeURIComponent(job.id)}/result`, { signal });
  } catch {
    if (signal.aborted) throw cancelledError();
    throw new JobError(
      "NETWORK",
      "The result could not be downloaded",
      "Check your connection and send the file again",
    );
  }
  if (!response.ok) throw toJobError(parseJson(await response.text()), response.status);
  const name = resultName(job, finished, response);
  const total = Number(response.headers.get("Content-Length")) || Number(finished.result?.size) ||
    0;
  const chunks = [];
  let received = 0;
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      received += value.byteLength;
      const fraction = total > 0 ? received / total : undefined;
      const text = total > 0
        ? `${percent(fraction)}, ${formatBytes(received)} of ${formatBytes(total)}`
        : formatBytes(received);
      setState(job, "downloading", text, fraction);
    }
  } catch {
    if (signal.aborted) throw cancelledError();
    throw new JobError(
      "NETWORK",
      "The download of the result broke off",
      "Check your connection and send the file again",
    );
  }
  const type = (response.headers.get("Content-Type") ?? "").split(";")[0] ||
    "application/octet-stream";
  const blob = new Blob(chunks, { type });
  blob.fileName = name;
  return blob;
}

function statEntries(op, stats) {
  const entries = [];
  const add = (term, value) => {
    if (value !== undefined && value !== null && value !== "") entries.push([term, String(value)]);
  };
  if (!stats || typeof stats !== "object") return entries;
  if (typeof stats.codec === "string") add("Codec", CODEC_NAMES[stats.codec] ?? stats.codec);
  if (typeof stats.quality === "string") add("Quality", stats.quality);
  if (Number.isFinite(stats.crf)) add("CRF", stats.crf);
  if (Number.isFinite(stats.score) && stats.metric === "ssim") {
    add("SSIM (1 = same)", stats.score.toFixed(3));
  }
  if (Number.isFinite(stats.score) && stats.metric === "vmaf") {
    add("VMAF", `${stats.score.toFixed(1)} of 100`);
  }
  if (typeof stats.metric === "string") add("Measured with", stats.metric.toUpperCase());
  if (Number.isFinite(stats.size_ratio)) add("Size ratio", stats.size_ratio.toFixed(2));
  if (stats.kept_input === true) {
    add("Result", `the original, unchanged${stats.reason ? `: ${stats.reason}` : ""}`);
  }
  if (stats.unchanged === true) add("Result", "already the requested size; unchanged");
  if (Number.isFinite(stats.width) && Number.isFinite(stats.height)) {
    add("Frame", `${stats.width}×${stats.height}`);
  }
  if (typeof stats.mode === "string" && op === "aspect") add("Mode", stats.mode);
  if (Number.isFinite(stats.duration)) add("Length", `${roundTime(stats.duration)} s`);
  if (Number.isFinite(stats.seconds)) add("Took", formatSeconds(stats.seconds));
  return entries;
}

function showResult(job, finished, blob) {
  const row = job.row;
  const name = blob.fileName;
  const stats = finished.result?.stats ?? {};
  job.url = URL.createObjectURL(blob);

  const kind = blob.type.split("/")[0];
  const ext = extensionOf(name);
  let media;
  if (kind === "image" || IMAGE_EXT.has(ext)) {
    media = element("img");
    media.alt = `Preview of ${name}`;
  } else if (kind === "audio" || AUDIO_EXT.has(ext)) {
    media = element("audio");
    media.controls = true;
    media.preload = "metadata";
  } else {
    media = element("video");
    media.controls = true;
    media.preload = "metadata";
    media.playsInline = true;
  }
  media.src = job.url;
  media.setAttribute("aria-label", `Preview of ${name}`);
  const box = $(".preview", row);
  box.replaceChildren(media);
  box.dataset.kind = media.tagName.toLowerCase();

  const inBytes = Number(stats.input_bytes) || job.file.size;
  const outBytes = blob.size;
  const sizes = $(".sizes", row);
  sizes.replaceChildren();
  sizes.append(
    element("span", "size-in", formatBytes(inBytes)),
    element("span", "arrow", " → "),
    element("strong", "size-out", formatBytes(outBytes)),
  );
  if (inBytes > 0) {
    const change = 1 - outBytes / inBytes;
    const saving = Math.round(change * 100) === 0
      ? element("span", "saving", "same size")
      : change > 0
      ? element("span", "saving good", `${Math.round(change * 100)} % smaller`)
      : element("span", "saving", `${Math.round(-change * 100)} % larger`);
    sizes.append(" ", saving);
  }

  const list = $(".stats", row);
  list.replaceChildren();
  for (const [term, value] of statEntries(job.args.get("op"), stats)) {
    const item = element("div");
    item.append(element("dt", "", term), element("dd", "", value));
    list.append(item);
  }

  const link = element("a", "button primary download", `Download ${name}`);
  link.href = job.url;
  link.download = name;
  $(".result-info", row).append(link);
  $(".job-result", row).hidden = false;
  setState(job, "done", `Done: ${name}`, 1);
}

function showError(job, error) {
  const row = job.row;
  $(".error", row)?.remove();
  const box = element("div", "error");
  box.setAttribute("role", "alert");
  box.append(
    element("p", "description", error.description || error.message),
  );
  if (error.solution) box.append(element("p", "solution", error.solution));
  row.append(box);
  setState(job, "failed", "Failed", 0);
}

async function downloadAll() {
  for (const job of jobs) {
    if (job.state !== "done") continue;
    $("a[download]", job.row)?.click();
    await delay(400);
  }
}

function clearFinished() {
  for (let i = jobs.length - 1; i >= 0; i--) {
    const job = jobs[i];
    if (!["done", "failed", "cancelled"].includes(job.state)) continue;
    if (job.url) URL.revokeObjectURL(job.url);
    job.row.remove();
    jobs.splice(i, 1);
  }
  $("#jobs-empty").hidden = jobs.length > 0;
  updateToolbar();
}

// ---------------------------------------------------------------------------------------------
// Wiring

function setFiles(files) {
  if (!files || files.length === 0) return;
  fileInput.files = files;
  showPicked();
}

drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("dragging");
});
drop.addEventListener("dragleave", (event) => {
  if (!drop.contains(event.relatedTarget)) drop.classList.remove("dragging");
});
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("dragging");
  setFiles(event.dataTransfer?.files);
});
// A file dropped beside the zone is taken too, instead of the browser leaving the page to open it.
document.addEventListener("dragover", (event) => event.preventDefault());
document.addEventListener("drop", (event) => {
  event.preventDefault();
  setFiles(event.dataTransfer?.files);
});

fileInput.addEventListener("change", showPicked);
opSelect.addEventListener("change", showOptions);
formatSelect.addEventListener("change", () => {
  chosenFormat[opSelect.value] = formatSelect.value;
  describeFormat();
  updateClipLength();
});
$("#resolution").addEventListener("change", showExactSize);
$("#aspect").addEventListener("change", showCustomAspect);
startInput.addEventListener("input", updateClipLength);
endInput.addEventListener("input", updateClipLength);
$("#set-start").addEventListener("click", () => {
  startInput.value = roundTime(preview.currentTime || 0);
  updateClipLength();
});
$("#set-end").addEventListener("click", () => {
  endInput.value = roundTime(preview.currentTime || 0);
  updateClipLength();
});
preview.addEventListener("loadedmetadata", () => {
  const duration = preview.duration;
  if (!Number.isFinite(duration) || duration <= 0) return;
  startInput.max = endInput.max = roundTime(duration);
  if (Number(startInput.value) >= duration) startInput.value = "0";
  endInput.value = roundTime(Math.min(duration, Number(startInput.value) + 5));
  updateClipLength();
});
preview.addEventListener("error", () => {
  if (!previewUrl) return;
  preview.hidden = true;
  $("#clip-unplayable").hidden = false;
});
form.addEventListener("submit", onSubmit);
$("#download-all").addEventListener("click", downloadAll);
$("#clear").addEventListener("click", clearFinished);
addEventListener("beforeunload", (event) => {
  if (jobs.some((j) => !["done", "failed", "cancelled", "waiting"].includes(j.state))) {
    event.preventDefault();
  }
});

showOptions();
showExactSize();
showCustomAspect();
showPicked();
loadInfo();
