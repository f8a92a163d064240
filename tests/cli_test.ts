import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  buildPermissions,
  join,
  listDir,
  makeDefaultEncodeFlv,
  makeMedia,
  probeFile,
  spawnServer,
  startServer,
  tempDir,
} from "./_helpers.ts";

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));
const PERMISSIONS = await buildPermissions();

interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `mmp ARGS` the way a user would, through `deno run main.ts`. */
export async function runCli(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...PERMISSIONS, MAIN, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code, stdout: decode(stdout), stderr: decode(stderr) };
}

Deno.test("mmp convert --to mp3 writes a valid MP3 beside the input", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await makeMedia(join(dir.path, "talk.mp4"), { duration: 2 });
  const run = await runCli(["convert", input, "--to", "mp3", "--server", `127.0.0.1:${srv.port}`]);
  assert.equal(run.code, 0, run.stderr + srv.logs.join("\n"));
  assert.match(run.stderr, /upload\s+100%/);
  assert.match(run.stderr, /wrote .*talk\.mp3/);
  const info = await probeFile(join(dir.path, "talk.mp3"));
  assert.equal(info.streams[0]?.codec, "mp3");
  assert.deepEqual(await listDir(dir.path), ["talk.mp3", "talk.mp4"]);
});

Deno.test("mmp convert refuses to overwrite without --force and --json reports the outcome", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await makeMedia(join(dir.path, "a.mp4"));
  const output = join(dir.path, "out.mp3");
  await Deno.writeTextFile(output, "keep me");
  const server = ["--server", `127.0.0.1:${srv.port}`];
  const refused = await runCli(["convert", input, "--to", "mp3", "--output", output, ...server]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /--force/);
  assert.equal(await Deno.readTextFile(output), "keep me");
  const forced = await runCli([
    "convert",
    input,
    "--to",
    "mp3",
    "--output",
    output,
    "--force",
    "--json",
    ...server,
  ]);
  assert.equal(forced.code, 0, forced.stderr);
  const outcome = JSON.parse(forced.stdout.trim());
  assert.equal(outcome.ok, true);
  assert.equal(outcome.output, output);
  assert.equal((await probeFile(output)).streams[0]?.codec, "mp3");
});

Deno.test("a server error exits 1 and prints code, description and solution", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await makeMedia(join(dir.path, "silent.mp4"), { audio: false });
  const run = await runCli(["convert", input, "--to", "mp3"], {
    MMP_SERVER: `127.0.0.1:${srv.port}`,
  });
  assert.equal(run.code, 1);
  assert.match(run.stderr, /NO_AUDIO/);
  assert.match(run.stderr, /no audio track/);
  assert.match(run.stderr, /solution: .+/);
  assert.deepEqual(await listDir(dir.path), ["silent.mp4"]);
});

Deno.test("usage errors exit 2, connection failures exit 3, --help exits 0", async (t) => {
  await using dir = await tempDir();
  const input = await makeMedia(join(dir.path, "a.mp4"), { duration: 1 });
  await t.step("--help on every verb", async () => {
    for (const args of [["--help"], ["serve", "--help"], ["convert", "--help"]]) {
      const run = await runCli(args);
      assert.equal(run.code, 0, args.join(" "));
      assert.match(run.stdout, /Usage/);
    }
  });
  await t.step("unknown format", async () => {
    const run = await runCli(["convert", input, "--to", "xyz"]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /Cannot write "xyz"/);
  });
  await t.step("missing input file", async () => {
    const run = await runCli(["convert", join(dir.path, "nope.mp4"), "--to", "mp3"]);
    assert.equal(run.code, 2);
  });
  await t.step("nothing listening", async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = listener.addr.port;
    listener.close();
    const run = await runCli(["convert", input, "--to", "mp3", "--server", `127.0.0.1:${port}`]);
    assert.equal(run.code, 3);
    assert.match(run.stderr, /Cannot connect/);
  });
});

Deno.test("mmp serve prints its address and stops cleanly on SIGTERM", async () => {
  await using dir = await tempDir();
  await using server = await spawnServer(dir.path);
  assert.ok(server.port > 0);
  server.child.kill("SIGTERM");
  const { code, stderr } = await server.ended();
  assert.equal(code, 0, stderr);
  assert.match(stderr, /stopping: draining/);
});

Deno.test("mmp compress says when it returns the input itself, and why", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await makeDefaultEncodeFlv(dir.path);
  const server = ["--server", `127.0.0.1:${srv.port}`, "--poll", "200ms"];
  const run = await runCli(["compress", input, "--format", "flv", ...server]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /\(100% of the input\); the input itself: ffmpeg's default encode/);
});

Deno.test("every client verb runs end to end from the command line", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const input = await makeMedia(join(dir.path, "movie.avi"), {
    duration: 3,
    size: "320x240",
    codecArgs: ["-c:v", "mpeg4", "-q:v", "2", "-c:a", "libmp3lame"],
  });
  const server = ["--server", `127.0.0.1:${srv.port}`, "--poll", "200ms"];
  const cases: [string, string[], string, (path: string) => Promise<void>][] = [
    ["compress", ["compress", input, "--quality", "small"], "movie.mp4", async (path) => {
      assert.ok((await Deno.stat(path)).size < (await Deno.stat(input)).size);
    }],
    ["resize", ["resize", input, "--resolution", "240x136"], "movie.mp4", async (path) => {
      const info = await probeFile(path);
      assert.deepEqual([info.video?.width, info.video?.height], [240, 136]);
    }],
    [
      "aspect",
      ["aspect", input, "--aspect", "16:9", "--mode", "crop"],
      "movie.mp4",
      async (path) => {
        const info = await probeFile(path);
        assert.ok(Math.abs(info.video!.width! / info.video!.height! - 16 / 9) < 0.01);
      },
    ],
    [
      "gif",
      ["convert", input, "--to", "gif", "--start", "0:01", "--end", "2.5"],
      "movie.gif",
      async (path) => {
        assert.equal((await probeFile(path)).video?.codec, "gif");
      },
    ],
    [
      "webm",
      ["convert", input, "--to", "webm", "--start", "1", "--end", "2"],
      "movie.webm",
      async (path) => {
        assert.equal((await probeFile(path)).video?.codec, "vp9");
      },
    ],
  ];
  for (const [name, args, output, check] of cases) {
    await t.step(name, async () => {
      const run = await runCli([...args, ...server, "--force"]);
      assert.equal(run.code, 0, run.stderr);
      await check(join(dir.path, output));
    });
  }
  await t.step("clip options are checked before anything is sent", async () => {
    const run = await runCli([
      "convert",
      input,
      "--to",
      "gif",
      "--start",
      "x",
      "--end",
      "2",
      ...server,
    ]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /--start/);
  });
});
