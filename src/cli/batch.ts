/**
 * Several files, one after another (the server runs one job per client IP): an overall line under
 * each file's progress, a failed file does not stop the rest, and a summary table at the end.
 *
 * @module
 */
import { basename } from "node:path";
import {
  ConnectionError,
  DetachedError,
  type JobResult,
  runJob,
  type RunJobOptions,
  ServerError,
} from "../client/client.ts";
import { createReporter, formatDuration } from "./progress.ts";
import { formatBytes } from "./units.ts";

/** How one file went. */
export interface FileOutcome {
  input: string;
  inputBytes: number;
  seconds: number;
  result?: JobResult;
  /** `code` is the server's error code, `CONNECTION`, or `EXISTS` (the output exists). */
  error?: FileError;
}

/** Why a file failed. */
export interface FileError {
  code: string;
  description: string;
  solution?: string;
}

/** Options of {@linkcode runFiles}. */
export interface RunFilesOptions {
  inputs: string[];
  /** The job options for one input (request, output, server, …), without progress. */
  jobFor: (input: string) => RunJobOptions;
  /** Progress on stderr: a terminal gets bars, anything else plain lines; undefined: quiet. */
  progress?: { tty: boolean; write: (text: string) => void };
  /** Called with each file's outcome as it ends. */
  onOutcome?: (outcome: FileOutcome) => void;
}

/** The error of a failed file, as the summary and `--json` show it. */
export function outcomeError(err: unknown): FileError {
  if (err instanceof ServerError) {
    return { code: err.code, description: err.message, solution: err.solution };
  }
  if (err instanceof ConnectionError) return { code: "CONNECTION", description: err.message };
  if (err instanceof Deno.errors.AlreadyExists) return { code: "EXISTS", description: err.message };
  throw err;
}

/**
 * Runs each input as its own job, in order; a file that fails is recorded and the next one runs.
 * A detach (Ctrl-C) ends the batch by throwing {@linkcode DetachedError}.
 */
export async function runFiles(options: RunFilesOptions): Promise<FileOutcome[]> {
  const sizes = await Promise.all(
    options.inputs.map((input) => Deno.stat(input).then((s) => s.size)),
  );
  const totalBytes = sizes.reduce((a, b) => a + b, 0);
  const startedAt = performance.now();
  let doneBytes = 0;
  let currentBytes = 0;
  const outcomes: FileOutcome[] = [];
  for (const [index, input] of options.inputs.entries()) {
    const inputBytes = sizes[index]!;
    const overall = () => {
      const seconds = (performance.now() - startedAt) / 1000;
      const moved = doneBytes + currentBytes;
      const rate = moved / Math.max(seconds, 0.001);
      const left = moved > 0 && seconds > 1
        ? `, ${formatDuration((totalBytes - moved) / rate)} left`
        : "";
      return `file ${index + 1} of ${options.inputs.length}: ${formatBytes(moved)} of ${
        formatBytes(totalBytes)
      }${left}`;
    };
    const progress = options.progress;
    const reporter = progress && createReporter({
      ...progress,
      ...(options.inputs.length > 1 && progress.tty && { overall }),
    });
    if (progress && options.inputs.length > 1) {
      progress.write(`${progress.tty ? "" : `${overall()}\n`}${basename(input)}\n`);
    }
    currentBytes = 0;
    const fileStart = performance.now();
    const outcome: FileOutcome = { input, inputBytes, seconds: 0 };
    try {
      outcome.result = await runJob({
        ...options.jobFor(input),
        onEvent: (event) => {
          // Upload counts for half of a file's share of the overall line, processing for the rest.
          if (event.stage === "upload") currentBytes = event.sent / 2;
          if (event.stage === "status") currentBytes = inputBytes * (0.5 + event.progress / 2);
          reporter?.onEvent(event);
        },
      });
    } catch (err) {
      reporter?.end();
      if (err instanceof DetachedError) throw err;
      outcome.error = outcomeError(err);
    }
    reporter?.end();
    doneBytes += inputBytes;
    outcome.seconds = (performance.now() - fileStart) / 1000;
    outcomes.push(outcome);
    options.onOutcome?.(outcome);
  }
  return outcomes;
}

/** The summary table: file, result, input → output size, time. */
export function summaryTable(outcomes: FileOutcome[]): string {
  const rows = outcomes.map((o) => [
    basename(o.input),
    o.result ? `ok ${basename(o.result.output)}` : `${o.error!.code}: ${o.error!.description}`,
    o.result
      ? `${formatBytes(o.inputBytes)} → ${formatBytes(o.result.size)}`
      : `${formatBytes(o.inputBytes)} → -`,
    `${o.seconds.toFixed(1)} s`,
  ]);
  const header = ["file", "result", "size", "time"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const format = (row: string[]) => row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ");
  const failed = outcomes.filter((o) => o.error).length;
  return [
    format(header),
    ...rows.map(format),
    `${outcomes.length - failed} of ${outcomes.length} done${failed ? `, ${failed} failed` : ""}`,
  ].join("\n");
}
