import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { buildPermissions, join, makeMedia, probeFile, startServer, tempDir } from "./_helpers.ts";

/**
 * `deno compile` needs its runtime (denort), which it downloads on first use. Where that download is
 * impossible (no internet), the test is registered as ignored and says why.
 */
async function compileBinary(): Promise<{ path: string } | { reason: string }> {
  const dir = await Deno.makeTempDir({ prefix: "mmp-build-" });
  const path = join(dir, "mmp");
  const flags = await buildPermissions();
  const { success, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      ...flags,
      "--output",
      path,
      fileURLToPath(new URL("../main.ts", import.meta.url)),
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (success) return { path };
  await Deno.remove(dir, { recursive: true });
  const text = new TextDecoder().decode(stderr);
  const reason = /dns error|download|failed to lookup|network/i.test(text)
    ? "deno compile cannot download its runtime (denort) on this machine"
    : `deno compile failed: ${text.trim().split("\n")[0]}`;
  return { reason };
}

const build = await compileBinary();

Deno.test({
  name: "reason" in build
    ? `compiled ./mmp converts to mp3 (ignored: ${build.reason})`
    : "compiled ./mmp converts to mp3",
  ignore: "reason" in build,
  async fn() {
    if (!("path" in build)) return;
    await using dir = await tempDir();
    await using srv = await startServer();
    try {
      const input = await makeMedia(join(dir.path, "a.mp4"));
      const { code, stderr } = await new Deno.Command(build.path, {
        args: ["convert", input, "--to", "mp3", "--server", `127.0.0.1:${srv.port}`],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(code, 0, new TextDecoder().decode(stderr));
      assert.equal((await probeFile(join(dir.path, "a.mp3"))).streams[0]?.codec, "mp3");
    } finally {
      await Deno.remove(join(build.path, ".."), { recursive: true });
    }
  },
});
