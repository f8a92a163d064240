/**
 * The job core: one client's job from its request to its cleanup, whatever the transport. The MMP
 * session (`src/server/`) and the HTTP API (`src/http/`) are thin adapters over it, so every rule
 * holds the same on both: one job per client IP, the quota reserved before the upload is read,
 * all-or-nothing uploads, the same errors, nothing left on disk.
 *
 * @module
 */
import { MmpError } from "../protocol/errors.ts";
import { MAX_PAYLOAD_SIZE } from "../protocol/frame.ts";
import { normalizeMediaType } from "../protocol/media_type.ts";
import { formatBytes } from "../cli/units.ts";
import type { Tools } from "../media/ffmpeg.ts";
import { serverInfo } from "../media/info.ts";
import { parseJobRequest } from "../media/operations.ts";
import { ClientJob } from "./client_job.ts";
import type { IpSlots } from "./ip_slots.ts";
import type { MediaLimits } from "./process.ts";
import type { JobQueue } from "./queue.ts";
import { ResumeRegistry } from "./resume_registry.ts";
import { outputAllowance, type Storage } from "./storage.ts";

/** Options of {@linkcode JobCore}. */
export interface JobCoreOptions {
  storage: Storage;
  queue: JobQueue;
  tools: Tools;
  /** The one-job-per-IP rule, shared by every transport. */
  slots: IpSlots;
  limits: MediaLimits;
  /** How long a resumable job outlives its connection, in seconds; 0 turns it off. Default 900. */
  resumeWindowSeconds?: number;
}

/** A job request as any transport receives it, before anything is checked. */
export interface JobSubmission {
  /** The client's IP: one job at a time each. */
  ip: string;
  /** `op`, its arguments, and the optional `sha256` and `name`, as in an MMP request frame. */
  args: Record<string, unknown>;
  /** The input's type: an extension or a MIME type, checked against the allow-list. */
  mediaType: string;
  /** The upload's announced size in bytes. */
  size: number;
  /** Random bytes in the job's ID. Default 16 (128 bits); MMP's IDs have 8 (16 hex digits). */
  idBytes?: number;
  /** The client's upload id: the job becomes resumable (see {@linkcode ResumeRegistry}). */
  uploadId?: string;
}

/** JSON with its object keys sorted, so equal requests compare equal as text. */
function stableJson(value: unknown): string {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return JSON.stringify(value);
  }
  const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${
    entries.map(([key, item]) => `${JSON.stringify(key)}:${stableJson(item)}`).join(",")
  }}`;
}

/** What a resumed upload must repeat of the first request: its arguments and media type. */
export function requestSignature(args: Record<string, unknown>, mediaType: string): string {
  return `${stableJson(args)} ${mediaType}`;
}

function randomHex(bytes: number): string {
  const random = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(random, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The transport-neutral job lifecycle, shared by every transport of one server.
 *
 * @example
 * ```ts
 * const job = await core.admit({ ip, args: { op: "audio" }, mediaType: "mp4", size });
 * try {
 *   await job.receive((sink) => copyUploadInto(sink));
 *   const output = await job.done;
 * } finally {
 *   await job.dispose();
 * }
 * ```
 */
export class JobCore {
  readonly storage: Storage;
  readonly queue: JobQueue;
  readonly tools: Tools;
  readonly slots: IpSlots;
  readonly limits: MediaLimits;
  /** Resumable jobs: uploads and jobs that outlive their connection for the resume window. */
  readonly resumable: ResumeRegistry;

  constructor(options: JobCoreOptions) {
    this.storage = options.storage;
    this.queue = options.queue;
    this.tools = options.tools;
    this.slots = options.slots;
    this.limits = options.limits;
    this.resumable = new ResumeRegistry((options.resumeWindowSeconds ?? 900) * 1000);
  }

  /**
   * Takes a request up to the point where its upload may be read: claims the client IP's slot
   * (`BUSY`), validates the arguments (`BAD_REQUEST`) and the media type (`UNSUPPORTED_MEDIA`),
   * and reserves the quota (`STORAGE_FULL`). On any refusal nothing stays held.
   */
  async admit(submission: JobSubmission): Promise<ClientJob> {
    const lease = await this.slots.claim(submission.ip).catch((err) => {
      if (
        err instanceof MmpError && err.code === "BUSY" && this.resumable.hasParked(submission.ip)
      ) {
        const minutes = Math.ceil(this.resumable.windowMs / 60_000);
        throw new MmpError(
          "BUSY",
          "A job from your address waits on this server for its client to come back",
          {
            solution: `Run \`mmp attach JOB\` with the job id mmp printed to get its result ` +
              `(\`mmp attach JOB --cancel\` ends it), or send again once it expires ` +
              `(at most ${minutes} min)`,
          },
        );
      }
      throw err;
    });
    try {
      const request = parseJobRequest(submission.args);
      const extension = normalizeMediaType(submission.mediaType);
      const size = submission.size;
      if (size === 0) {
        throw new MmpError("BAD_REQUEST", "The upload is empty", {
          solution: "Send the file's bytes as the upload",
        });
      }
      if (!Number.isSafeInteger(size) || size < 0 || size > MAX_PAYLOAD_SIZE) {
        throw new MmpError("TOO_LARGE", "The upload is larger than any this server accepts", {
          solution: `Send at most ${formatBytes(MAX_PAYLOAD_SIZE)}`,
        });
      }
      const reservation = await this.storage.reserve(size + outputAllowance(size));
      return new ClientJob(this, {
        id: randomHex(submission.idBytes ?? 16),
        lease,
        request,
        extension,
        size,
        reservation,
        // Files are named by an ID of their own: the client's job ID never reaches the disk.
        files: this.storage.jobFiles(randomHex(8)),
        ...(submission.uploadId === undefined ? {} : {
          uploadId: submission.uploadId,
          signature: requestSignature(submission.args, submission.mediaType),
        }),
      });
    } catch (err) {
      await lease.release();
      throw err;
    }
  }

  /** The answer to `info` (MMP op, `GET /api/info`): formats, operations and limits. */
  async info(): Promise<Record<string, unknown>> {
    const info = await serverInfo(this.tools, {
      ...this.limits,
      maxStorageBytes: this.storage.maxBytes,
    });
    return {
      ...info,
      type: "info",
      features: this.resumable.enabled ? ["resume"] : [],
    };
  }

  /** Keeps no more partial uploads and deletes the held ones (a draining server). */
  async dropPartialUploads(reason: unknown): Promise<void> {
    await this.resumable.closeUploads(reason);
  }

  /** Stops resuming: every parked job is cancelled and its files deleted (server shutdown). */
  async close(reason: unknown): Promise<void> {
    await this.resumable.close(reason);
  }
}

/** Fields of one job's log line. */
export interface JobLogFields {
  id?: string | undefined;
  ip: string;
  op?: string | undefined;
  inBytes: number;
  outBytes: number;
  startedAt: number;
  outcome: string;
  /** Appended in brackets, e.g. `http`. */
  via?: string;
}

/** The one log line per job, the same for every transport. */
export function jobLogLine(fields: JobLogFields): string {
  const seconds = ((performance.now() - fields.startedAt) / 1000).toFixed(1);
  return `job ${fields.id ?? "-"} ${fields.ip} ${fields.op ?? "-"} ` +
    `in=${formatBytes(fields.inBytes)} out=${formatBytes(fields.outBytes)} ${seconds}s ` +
    `${fields.outcome}${fields.via ? ` (${fields.via})` : ""}`;
}
