import { statfs } from "node:fs/promises";
import { join } from "node:path";
import { MmpError } from "../protocol/errors.ts";
import { formatBytes } from "../cli/units.ts";

/** Every file the server creates starts this way; nothing else in the directory is touched. */
const OWN_FILE = /^mmp-[0-9a-f]{16}-[a-z0-9.-]+$/;

/** Room reserved for a job's output besides its input: as large as the input, at least 64 MiB. */
export function outputAllowance(payloadSize: number): number {
  return Math.max(payloadSize, 64 * 2 ** 20);
}

/** A reservation of quota bytes, released exactly once. */
export interface Reservation extends Disposable {
  readonly bytes: number;
}

/** Options of {@linkcode Storage.open}. */
export interface StorageOptions {
  /** Directory for temporary job files; created when missing. */
  dir: string;
  /** Quota in bytes over all reservations. */
  maxBytes: number;
}

/**
 * The server's temporary storage: a quota over reservations, the disk's free space, and job files
 * named by the server alone.
 */
export class Storage {
  readonly dir: string;
  readonly maxBytes: number;
  #reserved = 0;

  private constructor(options: StorageOptions) {
    this.dir = options.dir;
    this.maxBytes = options.maxBytes;
  }

  /** Creates the directory when missing and removes the server's own leftovers from a crash. */
  static async open(options: StorageOptions): Promise<Storage> {
    await Deno.mkdir(options.dir, { recursive: true });
    const storage = new Storage(options);
    await storage.removeLeftovers();
    return storage;
  }

  /** Bytes reserved by uploads and jobs in flight. */
  get reserved(): number {
    return this.#reserved;
  }

  /** Deletes files matching the server's naming scheme; returns how many. */
  async removeLeftovers(): Promise<number> {
    let removed = 0;
    for await (const entry of Deno.readDir(this.dir)) {
      if (!entry.isFile || !OWN_FILE.test(entry.name)) continue;
      await Deno.remove(join(this.dir, entry.name)).catch(() => {});
      removed++;
    }
    return removed;
  }

  /** Reserves `bytes` against the quota and the free disk space, or throws `STORAGE_FULL`. */
  async reserve(bytes: number): Promise<Reservation> {
    const free = await this.#freeDiskBytes();
    if (this.#reserved + bytes > this.maxBytes || this.#reserved + bytes > free) {
      const room = Math.max(0, Math.min(this.maxBytes, free) - this.#reserved);
      throw new MmpError(
        "STORAGE_FULL",
        `The server has room for ${formatBytes(room)} now; this job needs ${formatBytes(bytes)}`,
        {
          solution: bytes > this.maxBytes
            ? "The file is larger than this server ever accepts: send a smaller file"
            : "Try again when other jobs have finished, or send a smaller file",
        },
      );
    }
    return this.#hold(bytes);
  }

  #hold(bytes: number): Reservation {
    this.#reserved += bytes;
    let held = true;
    return {
      bytes,
      [Symbol.dispose]: () => {
        if (held) this.#reserved -= bytes;
        held = false;
      },
    };
  }

  async #freeDiskBytes(): Promise<number> {
    const stats = await statfs(this.dir);
    return Number(stats.bavail) * Number(stats.bsize);
  }

  /** The set of files of one job, all deleted together. */
  jobFiles(jobId: string): JobFiles {
    return new JobFiles(this.dir, jobId);
  }
}

/** Paths of one job's files; `dispose` deletes every file handed out. */
export class JobFiles implements AsyncDisposable {
  readonly #dir: string;
  readonly #jobId: string;
  readonly #paths = new Set<string>();

  constructor(dir: string, jobId: string) {
    this.#dir = dir;
    this.#jobId = jobId;
  }

  /** A server-named path for this job; `suffix` comes from the server's own allow-lists. */
  path(suffix: string): string {
    const name = `mmp-${this.#jobId}-${suffix}`;
    if (!OWN_FILE.test(name)) throw new Error(`Invalid job file suffix: ${suffix}`);
    const path = join(this.#dir, name);
    this.#paths.add(path);
    return path;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all([...this.#paths].map((path) => Deno.remove(path).catch(() => {})));
    this.#paths.clear();
  }
}
