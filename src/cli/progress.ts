import type { ClientEvent } from "../client/client.ts";
import { formatBytes } from "./units.ts";

/** Options of {@linkcode createReporter}. */
export interface ReporterOptions {
  /** Redraw in place with a bar (a terminal) instead of printing a line per stage. */
  tty: boolean;
  /** Where text goes. */
  write: (text: string) => void;
  /** A line drawn under the file's progress on a terminal (a batch's overall progress). */
  overall?: () => string;
}

/** A reporter turns client events into progress output; `end` finishes the last line. */
export interface Reporter {
  onEvent: (event: ClientEvent) => void;
  end: () => void;
}

const BAR_WIDTH = 24;

function fraction(part: number, total: number): number {
  return total > 0 ? Math.min(1, part / total) : 1;
}

function percent(part: number, total: number): string {
  return `${Math.floor(fraction(part, total) * 100)}%`;
}

/** `[#########...............]` for a fraction 0..1. */
export function progressBar(done: number): string {
  const filled = Math.round(Math.min(1, Math.max(0, done)) * BAR_WIDTH);
  return `[${"#".repeat(filled)}${".".repeat(BAR_WIDTH - filled)}]`;
}

/** `45 s`, `3 min`, `1 h 5 min`: a duration for people. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  const hours = Math.floor(seconds / 3600);
  return `${hours} h ${Math.round((seconds - hours * 3600) / 60)} min`;
}

/**
 * Seconds left for `total` at the rate seen since the stage began (`from` at `startedAt`), or
 * undefined while there is too little to judge.
 */
export function secondsLeft(
  done: number,
  total: number,
  from: number,
  startedAt: number,
  now = performance.now(),
): number | undefined {
  const elapsed = (now - startedAt) / 1000;
  const moved = done - from;
  if (elapsed < 0.5 || moved <= 0) return undefined;
  return (total - done) / (moved / elapsed);
}

/** Progress for people: a live bar on a terminal, plain stage lines elsewhere. */
export function createReporter(options: ReporterOptions): Reporter {
  let stage = "";
  let lastDraw = 0;
  let startedAt = performance.now();
  /** Where the stage's counter stood when it began (a resumed upload starts past 0). */
  let from = 0;
  let dirty = false;

  const left = (done: number, total: number): string => {
    const seconds = secondsLeft(done, total, from, startedAt);
    return seconds === undefined || done >= total ? "" : `  ${formatDuration(seconds)} left`;
  };
  const bar = (done: number) => (options.tty ? `${progressBar(done)} ` : "");

  const transfer = (name: string, done: number, total: number): string => {
    const seconds = (performance.now() - startedAt) / 1000;
    const speed = seconds > 0 && done > from ? `  ${formatBytes((done - from) / seconds)}/s` : "";
    return `${name.padEnd(10)}${bar(fraction(done, total))}${percent(done, total)} of ${
      formatBytes(total)
    }${speed}${left(done, total)}`;
  };

  const line = (event: ClientEvent): string => {
    switch (event.stage) {
      case "hashing":
        return `checksum  ${bar(fraction(event.done, event.total))}${
          percent(event.done, event.total)
        }`;
      case "upload":
        return transfer("upload", event.sent, event.total);
      case "accepted":
        return event.queuePosition > 0
          ? `queued    job ${event.job}, position ${event.queuePosition}`
          : `accepted  job ${event.job}`;
      case "status":
        return event.state === "queued"
          ? `queued    position ${event.queuePosition}`
          : `process   ${bar(event.progress)}${Math.floor(event.progress * 100)}%${
            left(event.progress, 1)
          }`;
      case "download":
        return transfer("download", event.received, event.total);
      case "reconnect":
        return `connection lost (${event.reason}) — reconnecting in ${
          formatDuration(event.delayMs / 1000)
        } (try ${event.attempt} of ${event.retries})`;
      case "resume":
        if (event.phase === "wait") return "connection lost — back on the job, waiting for it";
        return `connection lost — resuming ${event.phase} at ${percent(event.offset, event.total)}`;
    }
  };

  const valueOf = (event: ClientEvent): number => {
    switch (event.stage) {
      case "hashing":
        return event.done;
      case "upload":
        return event.sent;
      case "download":
        return event.received;
      case "status":
        return event.state === "queued" ? 0 : event.progress;
      default:
        return 0;
    }
  };

  const isFinal = (event: ClientEvent): boolean => {
    switch (event.stage) {
      case "hashing":
        return event.done === event.total;
      case "upload":
        return event.sent === event.total;
      case "download":
        return event.received === event.total;
      default:
        return true;
    }
  };

  const draw = (text: string): void => {
    const overall = options.overall?.();
    options.write(
      overall === undefined ? `\r\x1b[2K${text}` : `\r\x1b[2K${text}\n\x1b[2K${overall}\x1b[1A\r`,
    );
    dirty = true;
  };

  const newLine = (): void => {
    if (options.tty && dirty) options.write("\n");
    dirty = false;
  };

  return {
    onEvent(event) {
      // A processing status keeps its stage while the state stays; queued to running starts anew.
      const key = event.stage === "status" ? `status-${event.state}` : event.stage;
      if (event.stage === "reconnect" || event.stage === "resume") {
        newLine();
        options.write(`${line(event)}\n`);
        stage = "";
        return;
      }
      if (key !== stage) {
        newLine();
        stage = key;
        startedAt = performance.now();
        from = valueOf(event);
      }
      const now = performance.now();
      if (options.tty) {
        if (now - lastDraw < 100 && !isFinal(event)) return;
        lastDraw = now;
        draw(line(event));
      } else if (isFinal(event) || event.stage === "status") {
        options.write(`${line(event)}\n`);
      }
    },
    end() {
      if (options.tty && dirty) options.write(options.overall ? "\n\x1b[2K" : "\n");
      dirty = false;
    },
  };
}
