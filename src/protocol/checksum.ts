import { createHash, type Hash } from "node:crypto";

/** A streaming SHA-256: feed chunks, read the hex digest at the end. */
export function sha256Stream(): Hash {
  return createHash("sha256");
}

/** Hex SHA-256 of a file, read in 1 MiB chunks. */
export async function hashFile(
  path: string,
  onProgress?: (bytes: number) => void,
): Promise<string> {
  using file = await Deno.open(path, { read: true });
  const hash = sha256Stream();
  const buf = new Uint8Array(1 << 20);
  let total = 0;
  for (let n = await file.read(buf); n !== null; n = await file.read(buf)) {
    hash.update(buf.subarray(0, n));
    total += n;
    onProgress?.(total);
  }
  return hash.digest("hex");
}
