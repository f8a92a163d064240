/**
 * mmp: a self-hosted video-processing service and its client, in one entry point.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { basename, extname, join, resolve } from "node:path";
import {
  attachJob,
  cancelJob,
  ConnectionError,
  DetachedError,
  type JobResult,
  requestInfo,
  ServerError,
  serverFeatures,
} from "./src/client/client.ts";
import { type FileOutcome, runFiles, summaryTable } from "./src/cli/batch.ts";
import { createReporter } from "./src/cli/progress.ts";
import { formatBytes, parseDuration, parseSize } from "./src/cli/units.ts";
import { CLIENT_VERBS, type ClientVerb, type OptionValues, UsageError } from "./src/cli/verbs.ts";
import { ToolMissingError } from "./src/media/ffmpeg.ts";
import {
  defaultCpus,
  defaultStorageDir,
  type HttpServeOptions,
  type RedisServeOptions,
  serve,
} from "./src/server/server.ts";

const EXIT_OK = 0;
const EXIT_SERVER_ERROR = 1;
const EXIT_USAGE = 2;
const EXIT_CONNECTION = 3;

const EXIT_INTERRUPTED = 130;

const CLIENT_OPTIONS_HELP = `Common options:
  --server HOST:PORT  server to use (default: env MMP_SERVER, else 127.0.0.1:9000)
  --output PATH       where to write the result (default: beside the input, new extension);
                      with several input files, an existing directory
  --force             replace an existing output file
  --poll DURATION     status poll interval, e.g. 5s, 2m (default 60s)
  --retries N         reconnect this often when the connection breaks, resuming the upload,
                      the wait or the download where it stood (default 5; 0: never)
  --bind ADDRESS      local address to connect from, e.g. 127.0.0.2
  --json              print one JSON line per file with the outcome (for scripts)
  --quiet             print nothing but errors
  --help              show this help

Several files run one after another (a server takes one job per address at a time); a file that
fails does not stop the others, a summary table ends the run, and the exit code is 1 if any failed.
Ctrl-C lets go of a job the server has accepted: it goes on there, and the job id is printed for
"mmp attach JOB" (result) or "mmp attach JOB --cancel". Against a server without resumable
uploads (protocol 2 or older) Ctrl-C cancels the job, as it always did.`;

const ATTACH_HELP = `Usage: mmp attach JOB [options]

Reconnects to job JOB (the id mmp printed) from the address that sent it, while the server keeps
it (its --resume-window, default 15 min): shows its progress and writes its result, resuming a
download that broke.

  --output PATH       the result's file, or a directory for the server's name (default: .)
  --cancel            cancel the job (or delete its result) instead
  --force             replace an existing output file
  --server HOST:PORT  server to use (default: env MMP_SERVER, else 127.0.0.1:9000)
  --bind ADDRESS      local address to connect from (the one that sent the job)
  --poll DURATION     status poll interval (default 60s)
  --retries N         reconnect this often when the connection breaks (default 5)
  --json              print one JSON line with the outcome
  --quiet             print nothing but errors

Example: mmp attach 5f0c2a9e81d3b7c4 --output results/`;

function mainHelp(): string {
  const verbs = [...CLIENT_VERBS.values()].map((v) => `  ${v.name.padEnd(10)}${v.summary}`);
  return `mmp — a self-hosted video-processing service

Usage:
  mmp serve [options]            run the service
  mmp <verb> FILE… [options]     send a job per file to a server
  mmp attach JOB [options]       get the result of a job that outlived its connection

Verbs:
  serve     Run the server
${verbs.join("\n")}
  attach    Reconnect to a job by its id: its progress, its result (or --cancel)
  formats   List what a server reads and writes

Exit codes: 0 done, 1 the server reported an error (or a file of several failed), 2 usage
error, 3 connection failed, 130 detached with Ctrl-C (the job goes on; see mmp attach).
Run "mmp <verb> --help" for a verb's options.`;
}

const SERVE_HELP = `Usage: mmp serve [options]

  --host HOST           address to listen on (default 0.0.0.0)
  --port PORT           TCP port, 0 for any free one (default 9000)
  --storage DIR         directory for temporary files (default ${defaultStorageDir()})
  --max-storage SIZE    quota for files in flight: bytes, 200MB, 4TB, 4TiB (default 4TB)
  --cpus N              CPU budget: threads the running jobs may use together; an MP3 job
                        takes 1, a video encode all (default ${defaultCpus()} here: every core)
  --jobs N              most jobs at once, whatever their threads (default: --cpus)
  --idle-timeout SECS   close uploads that stall this long, or that average under 1 KB/s
                        over that long (default 60)
  --max-connections N   open connections at once; more get BUSY (default 1024)
  --max-job-seconds N   stop a job that processes longer than this (default 3600)
  --http PORT           port of the web page and HTTP API, 0 for any free one (default 8080)
  --no-http             no web page, no HTTP API
  --http-host HOST      address for the web page and API (default: --host)
  --http-allowed-hosts NAMES
                        host names the web page answers to, comma-separated; * for any
                        (default: the --http-host address, localhost, and IP addresses)
  --result-ttl SECS     delete an HTTP result not downloaded within this long (default 600)
  --resume-window SECS  keep a broken resumable upload, a job whose client left and an
                        undelivered result this long for the client to come back (default 900;
                        0: off, as protocol 2)
  --ffmpeg PATH         ffmpeg to use, ffprobe beside it (default env MMP_FFMPEG, else PATH)
  --vmaf-ffmpeg PATH    an ffmpeg with libvmaf that compress scores its probes with (VMAF);
                        default: --ffmpeg if it has libvmaf, else compress scores SSIM
  --compress-budget X   time a compress job aims for, as a fixed multiple of ffmpeg's default
                        encode of the video (default: keep up with the video's length, within
                        1.5 to 6); more lets AV1 use slower presets: smaller files
  --drain-timeout SECS  on SIGTERM/SIGINT, let running jobs finish this long (default 600);
                        a second signal stops at once

Cluster (docs/cluster.md):
  --proxy-protocol ADDRS  load balancers (comma-separated IPs) whose MMP connections start with a
                        PROXY v1/v2 header; its client address counts as the client's IP
  --redis URL           share the one-job-per-IP rule over Redis, e.g. redis://10.0.0.5:6379
  --node-id NAME        this node's name in Redis leases (default: node-<random>)
  --lease-ttl SECS      a dead node's leases lapse after this long (default 15)
  --agent-port PORT     answer HAProxy agent checks here: "up ready N%" or "drain"
  --help                show this help

Example: mmp serve --port 9000 --http 8080 --max-storage 500GB`;

function verbHelp(verb: ClientVerb): string {
  return `Usage: mmp ${verb.name} FILE [options]

${verb.summary}.

${verb.optionsHelp}

${CLIENT_OPTIONS_HELP}

Example: ${verb.example}`;
}

/** Prints the message and exits: the CLI's one exit point for failures. */
function error(code: number, message: string): never {
  console.error(`mmp: ${message}`);
  Deno.exit(code);
}

interface ParsedArgs {
  values: OptionValues;
  positionals: string[];
}

function parseOrUsage(args: string[], strings: string[], booleans: string[]): ParsedArgs {
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const name of strings) options[name] = { type: "string" };
  for (const name of booleans) options[name] = { type: "boolean" };
  try {
    const { values, positionals } = parseArgs({
      args,
      options,
      allowPositionals: true,
      strict: true,
    });
    return { values: values as OptionValues, positionals };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** A string option's value. */
function text(values: OptionValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === "string" ? value : undefined;
}

/** A boolean option's value. */
function flag(values: OptionValues, name: string): boolean {
  return values[name] === true;
}

/** `{ key: value }`, or nothing when the value is missing (for exact optional properties). */
function defined<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return value === undefined ? {} : { [key]: value } as { [P in K]?: V };
}

function parseNumber(text: string | undefined, name: string, min: number, max: number) {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max}`);
  }
  return value;
}

/** `--compress-budget`: a multiple from 1 to 20, decimals allowed. */
function parseDecimal(text: string | undefined, name: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 1 || value > 20) {
    throw new UsageError(`--${name} must be a number from 1 to 20, such as 1.5`);
  }
  return value;
}

function sizeOption(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  try {
    return parseSize(text);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** The `http` serve option from `--http`, `--no-http`, `--http-host`, `--http-allowed-hosts`. */
function httpOption(values: OptionValues): HttpServeOptions | false {
  if (flag(values, "no-http")) {
    if (text(values, "http") !== undefined) {
      throw new UsageError("Give --http or --no-http, not both");
    }
    return false;
  }
  const hosts = text(values, "http-allowed-hosts")?.split(",").map((name) => name.trim())
    .filter(Boolean);
  if (hosts?.length === 0) throw new UsageError("--http-allowed-hosts needs at least one name");
  return {
    port: parseNumber(text(values, "http"), "http", 0, 65535) ?? 8080,
    ...defined("hostname", text(values, "http-host")),
    ...defined("allowedHosts", hosts),
  };
}

/** A comma-separated list option, or `undefined` when absent. */
function listOption(value: string | undefined, name: string): string[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(",").map((item) => item.trim()).filter(Boolean);
  if (items.length === 0) throw new UsageError(`--${name} needs at least one address`);
  return items;
}

/** The `redis` serve option from `--redis`, `--node-id` and `--lease-ttl`. */
function redisOption(values: OptionValues): RedisServeOptions | undefined {
  const url = text(values, "redis");
  const ttl = parseNumber(text(values, "lease-ttl"), "lease-ttl", 1, 3600);
  if (url === undefined) {
    if (text(values, "node-id") !== undefined || ttl !== undefined) {
      throw new UsageError("--node-id and --lease-ttl need --redis");
    }
    return undefined;
  }
  if (!/^rediss?:\/\//.test(url)) {
    throw new UsageError(`--redis must be redis://HOST:PORT, got "${url}"`);
  }
  return {
    url,
    ...defined("nodeId", text(values, "node-id")),
    ...defined("ttlMs", ttl === undefined ? undefined : ttl * 1000),
  };
}

async function runServe(args: string[]): Promise<number> {
  const { values, positionals } = parseOrUsage(
    args,
    [
      "host",
      "port",
      "storage",
      "max-storage",
      "jobs",
      "idle-timeout",
      "max-connections",
      "max-job-seconds",
      "http",
      "http-host",
      "http-allowed-hosts",
      "result-ttl",
      "resume-window",
      "ffmpeg",
      "vmaf-ffmpeg",
      "compress-budget",
      "cpus",
      "drain-timeout",
      "proxy-protocol",
      "redis",
      "node-id",
      "lease-ttl",
      "agent-port",
    ],
    ["help", "no-http"],
  );
  if (flag(values, "help")) return console.log(SERVE_HELP), EXIT_OK;
  if (positionals.length > 0) throw new UsageError(`Unexpected argument: ${positionals[0]}`);
  const server = await serve({
    ...defined("hostname", text(values, "host")),
    port: parseNumber(text(values, "port"), "port", 0, 65535) ?? 9000,
    ...defined("storageDir", text(values, "storage")),
    maxStorage: sizeOption(text(values, "max-storage")) ?? 4e12,
    cpus: parseNumber(text(values, "cpus"), "cpus", 1, 1024) ?? defaultCpus(),
    ...defined("jobs", parseNumber(text(values, "jobs"), "jobs", 1, 1024)),
    ...defined("proxyProtocol", listOption(text(values, "proxy-protocol"), "proxy-protocol")),
    ...defined("redis", redisOption(values)),
    ...defined("agentPort", parseNumber(text(values, "agent-port"), "agent-port", 0, 65535)),
    idleTimeoutSeconds: parseNumber(text(values, "idle-timeout"), "idle-timeout", 1, 86400) ?? 60,
    maxConnections: parseNumber(text(values, "max-connections"), "max-connections", 1, 100_000) ??
      1024,
    limits: {
      maxJobSeconds: parseNumber(text(values, "max-job-seconds"), "max-job-seconds", 1, 604_800) ??
        3600,
    },
    http: httpOption(values),
    resultTtlSeconds: parseNumber(text(values, "result-ttl"), "result-ttl", 1, 604_800) ?? 600,
    resumeWindowSeconds: parseNumber(text(values, "resume-window"), "resume-window", 0, 604_800) ??
      900,
    ...defined("ffmpeg", text(values, "ffmpeg")),
    ...defined("vmafFfmpeg", text(values, "vmaf-ffmpeg")),
    ...defined("compressBudget", parseDecimal(text(values, "compress-budget"), "compress-budget")),
  });
  const drainSeconds = parseNumber(text(values, "drain-timeout"), "drain-timeout", 0, 604_800) ??
    600;
  let signals = 0;
  const stop = () => {
    if (signals++ === 0) {
      console.error(
        `mmp: stopping: draining, running jobs may finish within ${drainSeconds} s ` +
          "(signal again to stop at once)",
      );
      server.drain(drainSeconds * 1000);
    } else {
      console.error("mmp: stopping now: cancelling jobs and deleting their files");
      server.shutdown();
    }
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  console.log(`mmp listening on ${server.addr.hostname}:${server.addr.port}`);
  if (server.httpAddr) {
    const { hostname, port } = server.httpAddr;
    console.log(`mmp web on http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`);
  }
  await server.finished;
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  return EXIT_OK;
}

function parseServer(text: string): { hostname: string; port: number } {
  const match = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(text);
  const port = Number(match?.[2]);
  if (!match || port < 1 || port > 65535) {
    throw new UsageError(`--server must be HOST:PORT, got "${text}"`);
  }
  return { hostname: match[1]!, port };
}

function defaultOutput(input: string, extension: string): string {
  const base = input.slice(0, input.length - extname(input).length);
  const output = `${base}.${extension}`;
  return resolve(output) === resolve(input) ? `${base}.out.${extension}` : output;
}

function describeResult(result: JobResult): string {
  const ratio = Number(result.stats.input_bytes) > 0
    ? ` (${Math.round((result.size / Number(result.stats.input_bytes)) * 100)}% of the input)`
    : "";
  // compress may answer with the upload itself; say so and why, or the user sees only "100%".
  const kept = result.stats.kept_input === true && typeof result.stats.reason === "string"
    ? `; the input itself: ${result.stats.reason}`
    : "";
  return `wrote ${result.output}: ${formatBytes(result.size)}${ratio}${kept}`;
}

/** Server, address, poll interval and retries: the options every client verb shares. */
function clientConnection(values: OptionValues) {
  const server = parseServer(
    text(values, "server") ?? Deno.env.get("MMP_SERVER") ?? "127.0.0.1:9000",
  );
  let pollMs: number;
  try {
    pollMs = parseDuration(text(values, "poll") ?? "60s");
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (pollMs < 100) throw new UsageError("--poll must be at least 100ms");
  return {
    connect: { ...server, ...defined("localAddress", text(values, "bind")) },
    pollMs,
    retries: parseNumber(text(values, "retries"), "retries", 0, 1000) ?? 5,
  };
}

/** Ctrl-C as an abort signal, for the duration of `run`. */
async function withSigint<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const cancel = new AbortController();
  const onSigint = () => cancel.abort();
  Deno.addSignalListener("SIGINT", onSigint);
  try {
    return await run(cancel.signal);
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
  }
}

function progressOutput(values: OptionValues) {
  if (flag(values, "quiet") || flag(values, "json")) return undefined;
  return {
    tty: Deno.stderr.isTerminal(),
    write: (text: string) => Deno.stderr.writeSync(new TextEncoder().encode(text)),
  };
}

function detachedMessage(err: DetachedError, connect: { hostname: string; port: number }): string {
  const server = `--server ${connect.hostname}:${connect.port}`;
  return `detached from job ${err.job}: it goes on on the server, which keeps it for its client ` +
    `(15 min by default)\n  mmp attach ${err.job} ${server}           gets its result\n` +
    `  mmp attach ${err.job} ${server} --cancel  cancels it`;
}

async function runClientVerb(verb: ClientVerb, args: string[]): Promise<number> {
  const { values, positionals } = parseOrUsage(
    args,
    [...verb.options, "server", "output", "poll", "bind", "retries"],
    ["help", "json", "quiet", "force", ...(verb.flags ?? [])],
  );
  if (flag(values, "help")) return console.log(verbHelp(verb)), EXIT_OK;
  if (positionals.length === 0) throw new UsageError(`Give an input file: ${verb.example}`);
  const { connect, pollMs, retries } = clientConnection(values);
  const many = positionals.length > 1;
  const outputOption = text(values, "output");
  const outputDir = many && outputOption !== undefined ? outputOption : undefined;
  if (outputDir !== undefined) {
    const isDir = await Deno.stat(outputDir).then((s) => s.isDirectory, () => false);
    if (!isDir) {
      throw new UsageError("With several input files, --output must be an existing directory");
    }
  }
  const plans = new Map<string, { request: Record<string, unknown>; output: string }>();
  for (const input of positionals) {
    const { request, extension } = verb.build(values, input);
    const fallback = defaultOutput(input, extension);
    const output = outputDir !== undefined
      ? join(outputDir, basename(fallback))
      : outputOption ?? fallback;
    if (resolve(output) === resolve(input)) {
      throw new UsageError("--output must not be the input file");
    }
    try {
      await Deno.stat(input);
    } catch {
      throw new UsageError(`Cannot read input file: ${input}`);
    }
    plans.set(input, { request, output });
  }
  const json = flag(values, "json");
  let resume: boolean;
  try {
    resume = (await serverFeatures(connect)).includes("resume");
  } catch (err) {
    return reportClientError(err, json);
  }
  const progress = progressOutput(values);
  return await withSigint(async (signal) => {
    let outcomes: FileOutcome[];
    try {
      outcomes = await runFiles({
        inputs: positionals,
        jobFor: (input) => ({
          ...connect,
          ...plans.get(input)!,
          input,
          force: flag(values, "force"),
          matchExtension: outputOption === undefined || outputDir !== undefined,
          pollMs,
          signal,
          resume,
          retries,
          onAbort: "detach",
        }),
        ...(progress && { progress }),
        onOutcome: (outcome) => {
          if (json) {
            const { result, error } = outcome;
            console.log(JSON.stringify(
              result ? { ok: true, input: outcome.input, ...result } : {
                ok: false,
                input: outcome.input,
                ...error,
              },
            ));
          } else if (outcome.result && progress) console.error(describeResult(outcome.result));
          else if (outcome.error && many) {
            const { code, description, solution } = outcome.error;
            console.error(
              `mmp: ${outcome.input}: ${code}: ${description}` +
                (solution ? `\n  solution: ${solution}` : ""),
            );
          }
        },
      });
    } catch (err) {
      if (!(err instanceof DetachedError)) throw err;
      if (!json) console.error(`mmp: ${detachedMessage(err, connect)}`);
      else console.log(JSON.stringify({ ok: false, code: "DETACHED", job: err.job }));
      return EXIT_INTERRUPTED;
    }
    if (many) {
      if (!json) console.error(summaryTable(outcomes));
      return outcomes.some((o) => o.error) ? EXIT_SERVER_ERROR : EXIT_OK;
    }
    const error = outcomes[0]!.error;
    if (!error) return EXIT_OK;
    if (error.code === "EXISTS") throw new UsageError(error.description);
    if (json) console.log(JSON.stringify({ ok: false, ...error }));
    else if (error.code === "CONNECTION") console.error(`mmp: ${error.description}`);
    else {
      console.error(
        `mmp: server error ${error.code}: ${error.description}\n  solution: ${error.solution}`,
      );
    }
    return error.code === "CONNECTION" ? EXIT_CONNECTION : EXIT_SERVER_ERROR;
  });
}

async function runAttach(args: string[]): Promise<number> {
  const { values, positionals } = parseOrUsage(
    args,
    ["server", "output", "poll", "bind", "retries"],
    ["help", "json", "quiet", "force", "cancel"],
  );
  if (flag(values, "help")) return console.log(ATTACH_HELP), EXIT_OK;
  const job = positionals[0];
  if (positionals.length !== 1 || !/^[0-9a-f]{16}$/.test(job!)) {
    throw new UsageError(
      "Give the job id mmp printed (16 hex digits): mmp attach 5f0c2a9e81d3b7c4",
    );
  }
  const { connect, pollMs, retries } = clientConnection(values);
  const json = flag(values, "json");
  try {
    if (flag(values, "cancel")) {
      await cancelJob({ ...connect, job: job! });
      if (json) console.log(JSON.stringify({ ok: true, job, cancelled: true }));
      else if (!flag(values, "quiet")) console.error(`mmp: job ${job} cancelled`);
      return EXIT_OK;
    }
    const progress = progressOutput(values);
    const reporter = progress && createReporter(progress);
    return await withSigint(async (signal) => {
      try {
        const result = await attachJob({
          ...connect,
          job: job!,
          ...defined("output", text(values, "output")),
          force: flag(values, "force"),
          pollMs,
          retries,
          signal,
          ...(reporter && { onEvent: reporter.onEvent }),
        });
        reporter?.end();
        if (json) console.log(JSON.stringify({ ok: true, ...result }));
        else if (progress) console.error(describeResult(result));
        return EXIT_OK;
      } catch (err) {
        reporter?.end();
        if (!(err instanceof DetachedError)) throw err;
        if (!json) console.error(`mmp: ${detachedMessage(err, connect)}`);
        return EXIT_INTERRUPTED;
      }
    });
  } catch (err) {
    return reportClientError(err, json);
  }
}

function reportClientError(err: unknown, json: boolean): number {
  if (err instanceof Deno.errors.AlreadyExists) throw new UsageError(err.message);
  if (err instanceof ServerError) {
    if (json) {
      console.log(JSON.stringify({
        ok: false,
        code: err.code,
        description: err.message,
        solution: err.solution,
      }));
    } else {
      console.error(`mmp: server error ${err.code}: ${err.message}\n  solution: ${err.solution}`);
    }
    return EXIT_SERVER_ERROR;
  }
  if (err instanceof ConnectionError) {
    if (json) {
      console.log(JSON.stringify({ ok: false, code: "CONNECTION", description: err.message }));
    } else console.error(`mmp: ${err.message}`);
    return EXIT_CONNECTION;
  }
  throw err;
}

const FORMATS_HELP = `Usage: mmp formats [--server HOST:PORT] [--json]

Lists what a server reads and writes: its operations with their output formats, every output
format with its codecs, the input formats it accepts and its limits (the MMP "info" op).

  --server HOST:PORT  server to ask (default: env MMP_SERVER, else 127.0.0.1:9000)
  --bind ADDRESS      local address to connect from
  --json              print the server's answer as JSON`;

async function runFormats(args: string[]): Promise<number> {
  const { values, positionals } = parseOrUsage(args, ["server", "bind"], ["help", "json"]);
  if (flag(values, "help")) return console.log(FORMATS_HELP), EXIT_OK;
  if (positionals.length > 0) throw new UsageError(`Unexpected argument: ${positionals[0]}`);
  const server = parseServer(
    text(values, "server") ?? Deno.env.get("MMP_SERVER") ?? "127.0.0.1:9000",
  );
  try {
    const info = await requestInfo({ ...server, ...defined("localAddress", text(values, "bind")) });
    console.log(flag(values, "json") ? JSON.stringify(info) : describeInfo(info));
    return EXIT_OK;
  } catch (err) {
    return reportClientError(err, flag(values, "json"));
  }
}

/** The `info` answer as a few readable lines. */
function describeInfo(info: Record<string, unknown>): string {
  const lines = [`mmp server, protocol ${info.version}`, "", "Operations and their formats:"];
  const operations = (info.operations ?? {}) as Record<string, { formats?: string[] }>;
  for (const [op, spec] of Object.entries(operations)) {
    lines.push(`  ${op.padEnd(9)} ${(spec.formats ?? []).join(" ")}`);
  }
  lines.push("", "Output formats (codecs used when a stream must be re-encoded):");
  for (const f of (info.output_formats ?? []) as Record<string, string>[]) {
    const codecs = [f.video_codec, f.audio_codec, f.subtitle_codec].filter(Boolean).join(" + ");
    lines.push(`  ${String(f.format).padEnd(6)} ${String(f.kind).padEnd(10)} ${codecs}`);
  }
  const inputs = (info.input_formats ?? []) as string[];
  lines.push("", `Input formats (${inputs.length}):`, wrap(inputs.join(" "), 96, "  "));
  const limits = (info.limits ?? {}) as Record<string, number>;
  lines.push("", "Limits:");
  for (const [key, value] of Object.entries(limits)) lines.push(`  ${key}: ${value}`);
  return lines.join("\n");
}

function wrap(text: string, width: number, indent: string): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line && line.length + word.length + 1 > width) {
      lines.push(indent + line);
      line = "";
    }
    line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(indent + line);
  return lines.join("\n");
}

/** Runs the CLI with `args` and returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const [verbName, ...rest] = args;
  if (verbName === undefined || verbName === "help" || verbName === "--help" || verbName === "-h") {
    console.log(mainHelp());
    return verbName === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (verbName === "serve") return await runServe(rest);
  if (verbName === "formats") return await runFormats(rest);
  if (verbName === "attach") return await runAttach(rest);
  const verb = CLIENT_VERBS.get(verbName);
  if (!verb) throw new UsageError(`Unknown verb "${verbName}": run "mmp --help"`);
  return await runClientVerb(verb, rest);
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (err) {
    if (err instanceof UsageError) error(EXIT_USAGE, err.message);
    if (err instanceof ToolMissingError) error(EXIT_USAGE, err.message);
    if (err instanceof Deno.errors.AddrInUse) error(EXIT_USAGE, `Cannot listen: ${err.message}`);
    error(EXIT_SERVER_ERROR, (err as Error).stack ?? String(err));
  }
}
