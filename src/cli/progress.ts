import type { ClientEvent } from "../client/client.ts";
import { formatBytes } from "./units.ts";

/** Options of {@linkcode createReporter}. */
export interface ReporterOptions {
  /** Redraw one line in place (a terminal) instead of printing a line per stage. */
  tty: boolean;
  /** Where text goes. */
  write: (text: string) => void;
}

/** A reporter turns client events into progress output; `end` finishes the last line. */
export interface Reporter {
  onEvent: (event: ClientEvent) => void;
  end: () => void;
}

function percent(part: number, total: number): string {
  return `${total > 0 ? Math.floor((part / total) * 100) : 100}%`;
}

/** Progress for people: a live line on a terminal, plain stage lines elsewhere. */
export function createReporter(options: ReporterOptions): Reporter {
  let stage = "";
  let lastDraw = 0;
  let started = performance.now();
  let dirty = false;

  const line = (event: ClientEvent): string => {
    switch (event.stage) {
      case "hashing":
        return `checksum  ${percent(event.done, event.total)}`;
      case "upload": {
        const seconds = (performance.now() - started) / 1000;
        const speed = seconds > 0 ? `${formatBytes(event.sent / seconds)}/s` : "";
        return `upload    ${percent(event.sent, event.total)} of ${
          formatBytes(event.total)
        } ${speed}`;
      }
      case "accepted":
        return event.queuePosition > 0
          ? `queued    job ${event.job}, position ${event.queuePosition}`
          : `accepted  job ${event.job}`;
      case "status":
        return event.state === "queued"
          ? `queued    position ${event.queuePosition}`
          : `process   ${Math.floor(event.progress * 100)}%`;
      case "download":
        return `download  ${percent(event.received, event.total)} of ${formatBytes(event.total)}`;
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

  return {
    onEvent(event) {
      if (event.stage !== stage) {
        if (options.tty && dirty) options.write("\n");
        stage = event.stage;
        started = performance.now();
        dirty = false;
      }
      const now = performance.now();
      if (options.tty) {
        if (now - lastDraw < 100 && !isFinal(event)) return;
        lastDraw = now;
        options.write(`\r\x1b[2K${line(event)}`);
        dirty = true;
      } else if (isFinal(event) || event.stage === "status") {
        options.write(`${line(event)}\n`);
      }
    },
    end() {
      if (options.tty && dirty) options.write("\n");
      dirty = false;
    },
  };
}
