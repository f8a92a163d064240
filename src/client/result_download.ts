/**
 * A result download that survives reconnects: the bytes go to a partial file beside the output
 * with their hash so far, a resumed result frame continues them, and only a whole, verified file
 * takes the output's name.
 *
 * @module
 */
import type { Hash } from "node:crypto";
import { sha256Stream } from "../protocol/checksum.ts";
import type { FrameHead, FrameReader } from "../protocol/frame_reader.ts";
import { writeAll } from "../protocol/frame_writer.ts";
import { checkOutputFree, ConnectionError, num, partialPath, str } from "./common.ts";

/** A result being downloaded: kept across reconnects with its hash so far. */
export interface Download {
  partial: string;
  output: string;
  hash: Hash;
  received: number;
  total: number;
  sha256: string;
  json: Record<string, unknown>;
  mediaType: string;
}

/**
 * The download a result frame continues: `kept` when the frame resumes it (same result, from
 * where it stopped), else a new empty one (and `kept`'s partial file is deleted).
 */
export async function downloadFor(
  head: FrameHead,
  kept: Download | undefined,
  outputFor: (mediaType: string, name: string) => string,
): Promise<Download> {
  const sha256 = str(head.json.sha256);
  const offset = num(head.json.offset);
  const total = num(head.json.size) || offset + head.header.payloadSize;
  let download = kept;
  if (!download || offset === 0 || download.sha256 !== sha256) {
    if (download) await Deno.remove(download.partial).catch(() => {});
    const output = outputFor(head.mediaType, str(head.json.name));
    download = {
      partial: partialPath(output),
      output,
      hash: sha256Stream(),
      received: 0,
      total,
      sha256,
      json: head.json,
      mediaType: head.mediaType,
    };
    await Deno.writeFile(download.partial, new Uint8Array());
  }
  if (offset !== download.received || offset + head.header.payloadSize !== total) {
    throw new ConnectionError("The server resumed the result at another offset than asked");
  }
  return download;
}

/** Appends the frame's payload to the partial file; `onChunk` after each piece written. */
export async function receivePayload(
  download: Download,
  reader: FrameReader,
  head: FrameHead,
  onChunk: () => void,
): Promise<void> {
  using file = await Deno.open(download.partial, { write: true });
  await file.truncate(download.received);
  await file.seek(download.received, Deno.SeekMode.Start);
  await reader.copyPayload(head.header.payloadSize, async (chunk) => {
    download.hash.update(chunk);
    await writeAll(file, chunk);
    download.received += chunk.length;
    onChunk();
  });
}

/** Checks the whole file against its SHA-256 and gives it the output's name (else deletes it). */
export async function completeDownload(download: Download, force?: boolean): Promise<void> {
  try {
    if (download.hash.digest("hex") !== download.sha256) {
      throw new ConnectionError("The result arrived damaged: its SHA-256 does not match");
    }
    await checkOutputFree(download.output, force);
    await Deno.rename(download.partial, download.output);
  } catch (err) {
    await Deno.remove(download.partial).catch(() => {});
    throw err;
  }
}
