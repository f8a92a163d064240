import { MmpError } from "../protocol/errors.ts";
import { aspect } from "./aspect.ts";
import { audio } from "./audio.ts";
import { clip } from "./clip.ts";
import { compress } from "./compress.ts";
import { convert } from "./convert.ts";
import { resize } from "./resize.ts";
import type { Operation, Plan } from "./operation.ts";

/** Every operation the server runs, by its `op` value. */
export const OPERATIONS: ReadonlyMap<string, Operation> = new Map(
  [compress, resize, aspect, audio, clip, convert].map((op) => [op.name, op]),
);

/** Keys every job request may carry. */
const COMMON_KEYS = ["op", "sha256", "name"];

/** A job request that passed validation. */
export interface JobRequest {
  op: string;
  plan: Plan;
  /** Lower-case hex SHA-256 of the payload, when the client sent one. */
  sha256?: string;
  /** A safe base name for the result, derived from the client's `name`. */
  baseName: string;
}

function badRequest(description: string, solution?: string): MmpError {
  return new MmpError("BAD_REQUEST", description, solution ? { solution } : {});
}

/** A file name the client sent, reduced to a safe base name without extension. */
function safeBaseName(name: unknown): string {
  if (name === undefined) return "output";
  if (typeof name !== "string" || name.length > 255) {
    throw badRequest("The name field must be a file name of at most 255 characters");
  }
  const base = name.split(/[\\/]/).pop()!.replace(/\.[^.]*$/, "");
  const safe = base.replace(/[^\p{L}\p{N} ._-]/gu, "_").replace(/^[.\s]+/, "").slice(0, 120);
  return safe || "output";
}

/** Validates a job request's JSON against the allow-lists; throws `BAD_REQUEST`. */
export function parseJobRequest(json: Record<string, unknown>): JobRequest {
  const op = json.op;
  if (typeof op !== "string") throw badRequest('The request has no "op" field');
  const operation = OPERATIONS.get(op);
  if (!operation) {
    const known = [...OPERATIONS.keys()].join(", ");
    throw badRequest(`Unknown operation: ${op.slice(0, 40)}`, `Use one of: ${known}`);
  }
  for (const key of Object.keys(json)) {
    if (!COMMON_KEYS.includes(key) && !operation.keys.includes(key)) {
      const allowed = [...COMMON_KEYS, ...operation.keys].join(", ");
      throw badRequest(`Unknown argument for ${op}: ${key.slice(0, 40)}`, `Use only: ${allowed}`);
    }
  }
  const sha256 = json.sha256;
  if (sha256 !== undefined && (typeof sha256 !== "string" || !/^[0-9a-f]{64}$/i.test(sha256))) {
    throw badRequest("The sha256 field must be 64 hexadecimal characters");
  }
  const request: JobRequest = {
    op,
    plan: operation.parse(json),
    baseName: safeBaseName(json.name),
  };
  if (sha256 !== undefined) request.sha256 = sha256.toLowerCase();
  return request;
}
