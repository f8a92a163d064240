import { MmpError } from "../protocol/errors.ts";
import type { ClientJob } from "../jobs/client_job.ts";
import { describeError, type ErrorBody } from "./errors.ts";

/** How often an event stream looks at its job. */
const POLL_MS = 250;

const encoder = new TextEncoder();

/** The error a failed or cancelled job reports. */
export function jobError(job: ClientJob): ErrorBody {
  const error = job.error ?? new MmpError("CANCELLED", "The job was cancelled as you asked");
  return describeError(error).body;
}

/** A job as `GET /api/jobs/ID` shows it. */
export function jobJson(job: ClientJob): Record<string, unknown> {
  const json: Record<string, unknown> = { job: job.id, ...job.status() };
  const state = job.state;
  if (state === "done") json.result = job.describeResult();
  if (state === "failed" || state === "cancelled") json.error = jobError(job);
  return json;
}

function event(name: string, data: unknown): Uint8Array {
  return encoder.encode(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
}

/**
 * `GET /api/jobs/ID/events`: Server-Sent Events. `status` whenever the job's state, progress or
 * queue position changes, then one `result` or `error`, then the stream ends. The stream's timer
 * stops when the client goes away or `signal` (shutdown) aborts.
 */
export function eventStream(job: ClientJob, signal: AbortSignal): Response {
  let timer: ReturnType<typeof setInterval> | undefined;
  let last = "";
  const stop = () => {
    clearInterval(timer);
    timer = undefined;
    signal.removeEventListener("abort", tick);
  };
  let tick = () => {};
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      tick = () => {
        const state = job.state;
        if (state === "done" || state === "failed" || state === "cancelled" || signal.aborted) {
          stop();
          if (state === "done") controller.enqueue(event("result", jobJson(job)));
          else {
            const error = state === "failed" || state === "cancelled"
              ? jobError(job)
              : describeError(signal.reason).body;
            controller.enqueue(event("error", { job: job.id, state, error }));
          }
          controller.close();
          return;
        }
        const status = JSON.stringify({ job: job.id, ...job.status() });
        if (status === last) return;
        last = status;
        controller.enqueue(encoder.encode(`event: status\ndata: ${status}\n\n`));
      };
      signal.addEventListener("abort", tick, { once: true });
      timer = setInterval(tick, POLL_MS);
      tick();
    },
    cancel: stop,
  });
  return new Response(body, {
    headers: {
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-store",
      "X-Accel-Buffering": "no",
    },
  });
}
