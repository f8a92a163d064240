/**
 * The baseline receiver of `deno task bench`, run as its own process like the mmp server: accepts
 * connections on 127.0.0.1, reads each into a 1 MiB buffer and writes what it reads to a file in
 * DIR (deleted when the connection ends). No framing, no checks: what a minimal copy costs.
 *
 * `deno run -A bench/raw_receiver.ts DIR` prints `raw listening on 127.0.0.1:PORT`.
 */
import { join } from "node:path";
import { writeAll } from "../src/protocol/frame_writer.ts";

async function receive(conn: Deno.Conn, dir: string): Promise<void> {
  const path = join(dir, `raw-${crypto.randomUUID()}`);
  try {
    using file = await Deno.open(path, { write: true, createNew: true });
    const buf = new Uint8Array(1 << 20);
    for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
      await writeAll(file, buf.subarray(0, n));
    }
  } catch { /* reset by the sender */ }
  conn.close();
  await Deno.remove(path).catch(() => {});
}

if (import.meta.main) {
  const dir = Deno.args[0];
  if (!dir) throw new Error("usage: raw_receiver.ts DIR");
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log(`raw listening on 127.0.0.1:${listener.addr.port}`);
  Deno.addSignalListener("SIGTERM", () => listener.close());
  for await (const conn of listener) receive(conn, dir);
}
