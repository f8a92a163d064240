/**
 * Hostile input and faults. After every case the server must still serve a normal job, hold no file
 * of that case, and have no ffmpeg left running.
 */
import assert from "node:assert/strict";
import { concat } from "./_bytes.ts";
import { runJob } from "../src/client/client.ts";
import { encodeFrameHead, encodeHeader } from "../src/protocol/frame.ts";
import { serve } from "../src/server/server.ts";
import {
  eventually,
  ffmpeg,
  ffmpegChildren,
  ffmpegUsing,
  join,
  listDir,
  makeMedia,
  RawClient,
  spawnServer,
  startServer,
  storageSettles,
  tempDir,
  type TestServer,
} from "./_helpers.ts";

const encoder = new TextEncoder();

/** The checks after every case. */
async function assertHealthy(srv: TestServer, normalInput: string): Promise<void> {
  assert.deepEqual(await storageSettles(srv.storageDir), [], "storage holds leftovers");
  assert.ok(
    await eventually(async () => (await ffmpegChildren()).length === 0),
    "ffmpeg left running",
  );
  const result = await runJob({
    hostname: "127.0.0.1",
    port: srv.port,
    request: { op: "audio" },
    input: normalInput,
    output: `${normalInput}.${crypto.randomUUID()}.mp3`,
  });
  await Deno.remove(result.output);
  assert.deepEqual(await storageSettles(srv.storageDir), []);
  // The server frees a job's quota right after the result's last byte, as the client reads it.
  assert.ok(await eventually(() => srv.server.storage.reserved === 0), "quota still reserved");
}

/** Sends raw bytes and returns the code of the error frame the server answers with, if any. */
async function answerTo(
  srv: TestServer,
  bytes: Uint8Array,
  ip?: string,
  eof = false,
): Promise<string | undefined> {
  using client = await RawClient.open(srv.port, ip);
  await client.send(bytes).catch(() => {});
  if (eof) (client.conn as Deno.TcpConn).closeWrite();
  const reply = await client.nextFrame().catch(() => null);
  if (reply) {
    assert.equal(reply.header.mediaSize, 0);
    assert.equal(reply.header.payloadSize, 0);
    assert.ok(String(reply.json.description).length > 0 && String(reply.json.solution).length > 0);
  }
  return reply?.json.code as string | undefined;
}

/** A frame with raw JSON and media-type bytes, for malformed cases. */
function rawFrame(json: Uint8Array, media: Uint8Array, payload = new Uint8Array()): Uint8Array {
  const header = encodeHeader({
    jsonSize: json.length,
    mediaSize: media.length,
    payloadSize: payload.length,
  });
  return concat(header, json, media, payload);
}

Deno.test("malformed frames and requests get a clear error and cost nothing", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer({ idleTimeoutSeconds: 1 });
  const normal = await makeMedia(join(dir.path, "normal.mp4"), { duration: 1, size: "96x64" });
  const body = new Uint8Array(1000);
  const cases: [string, Uint8Array, string | undefined][] = [
    ["truncated header, then EOF", new Uint8Array([0, 10, 3]), "BAD_FRAME"],
    [
      "truncated JSON, then EOF",
      encodeFrameHead({ op: "audio" }, "mp4", 10).subarray(0, 12),
      "BAD_FRAME",
    ],
    ["JSON array", rawFrame(encoder.encode("[1,2]"), encoder.encode("mp4"), body), "BAD_FRAME"],
    ["JSON string", rawFrame(encoder.encode('"audio"'), encoder.encode("mp4"), body), "BAD_FRAME"],
    [
      "invalid UTF-8 JSON",
      rawFrame(new Uint8Array([0x7b, 0xff, 0x7d]), encoder.encode("mp4"), body),
      "BAD_FRAME",
    ],
    ["payload but no JSON", rawFrame(new Uint8Array(), encoder.encode("mp4"), body), "BAD_FRAME"],
    ["missing op", encodeFrameHead({ sha256: "a".repeat(64) }, "mp4", 1000), "BAD_REQUEST"],
    ["op of the wrong type", encodeFrameHead({ op: 5 }, "mp4", 1000), "BAD_REQUEST"],
    ["unknown op", encodeFrameHead({ op: "rm" }, "mp4", 1000), "BAD_REQUEST"],
    [
      "unknown key",
      encodeFrameHead({ op: "audio", path: "/etc/passwd" }, "mp4", 1000),
      "BAD_REQUEST",
    ],
    [
      "huge number",
      rawFrame(
        encoder.encode('{"op":"clip","start":1e400,"end":2,"format":"gif"}'),
        encoder.encode("mp4"),
        body,
      ),
      "BAD_REQUEST",
    ],
    [
      "negative time",
      encodeFrameHead({ op: "clip", start: -1, end: 2, format: "gif" }, "mp4", 1000),
      "BAD_REQUEST",
    ],
    [
      "time of the wrong type",
      encodeFrameHead({ op: "clip", start: [1], end: 2, format: "gif" }, "mp4", 1000),
      "BAD_REQUEST",
    ],
    ["empty payload", encodeFrameHead({ op: "audio" }, "mp4", 0), "BAD_REQUEST"],
    [
      "name that is not a string",
      encodeFrameHead({ op: "audio", name: { a: 1 } }, "mp4", 1000),
      "BAD_REQUEST",
    ],
  ];
  for (const [name, bytes, code] of cases) {
    await t.step(name, async () => {
      assert.equal(await answerTo(srv, bytes, undefined, name.endsWith("EOF")), code);
      await assertHealthy(srv, normal);
    });
  }
  await t.step("truncated header, then silence: TIMEOUT", async () => {
    assert.equal(await answerTo(srv, new Uint8Array([0, 10, 3, 0])), "TIMEOUT");
    await assertHealthy(srv, normal);
  });
  await t.step("truncated payload, then silence: TIMEOUT, partial file deleted", async () => {
    assert.equal(
      await answerTo(srv, concat(encodeFrameHead({ op: "audio" }, "mp4", 5000), body)),
      "TIMEOUT",
    );
    await assertHealthy(srv, normal);
  });
});

Deno.test("media types that are not plain allow-listed extensions are UNSUPPORTED_MEDIA", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const normal = await makeMedia(join(dir.path, "normal.mp4"), { duration: 1, size: "96x64" });
  const json = encoder.encode('{"op":"audio"}');
  const media: [string, Uint8Array][] = [
    ["path separator", encoder.encode("mp4/../../x")],
    ["dot-dot", encoder.encode("..")],
    ["NUL byte", encoder.encode("mp4\0.sh")],
    ["invalid UTF-8", new Uint8Array([0x6d, 0xff, 0x34])],
    ["empty with a payload", new Uint8Array()],
    ["255 characters", encoder.encode("m".repeat(255))],
    ["an option", encoder.encode("-f lavfi")],
  ];
  for (const [name, bytes] of media) {
    await t.step(name, async () => {
      assert.equal(
        await answerTo(srv, rawFrame(json, bytes, new Uint8Array(100))),
        "UNSUPPORTED_MEDIA",
      );
      await assertHealthy(srv, normal);
    });
  }
});

Deno.test("filter-graph and option injection through arguments is BAD_REQUEST", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const normal = await makeMedia(join(dir.path, "normal.mp4"), { duration: 1, size: "96x64" });
  const requests = [
    { op: "resize", resolution: "320x240,drawbox" },
    { op: "resize", resolution: "320x240 -i /etc/passwd" },
    { op: "aspect", aspect: "16:9[x];[x]drawtext" },
    { op: "aspect", aspect: "16:9", mode: "pad,hflip" },
    { op: "clip", start: "1;movie=/etc/passwd", end: 2, format: "gif" },
    { op: "clip", start: 0, end: 1, format: "gif -y /tmp/x" },
    { op: "compress", quality: "high:x264opts" },
    { op: "compress", codec: "copy" },
  ];
  for (const request of requests) {
    await t.step(JSON.stringify(request), async () => {
      assert.equal(await answerTo(srv, encodeFrameHead(request, "mp4", 1000)), "BAD_REQUEST");
      await assertHealthy(srv, normal);
    });
  }
});

Deno.test("resource abuse is refused or bounded", async (t) => {
  await using dir = await tempDir();
  const normal = await makeMedia(join(dir.path, "normal.mp4"), { duration: 1, size: "96x64" });
  await t.step("payload of 2^40-1 bytes: STORAGE_FULL before any payload", async () => {
    await using srv = await startServer();
    assert.equal(
      await answerTo(srv, encodeFrameHead({ op: "audio" }, "mp4", 2 ** 40 - 1)),
      "STORAGE_FULL",
    );
    await assertHealthy(srv, normal);
  });
  await t.step("a payload trickling a byte at a time is cut off", async () => {
    await using srv = await startServer({ idleTimeoutSeconds: 1 });
    using client = await RawClient.open(srv.port);
    await client.sendHead({ op: "audio" }, "mp4", 100_000);
    let answered = false;
    const reply = client.nextFrame().finally(() => answered = true);
    let sent = 0;
    for (let i = 0; i < 40 && !answered; i++) {
      const ok = await client.send(new Uint8Array(1)).then(() => true, () => false);
      if (!ok) break;
      sent++;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal((await reply)?.json.code, "TIMEOUT");
    assert.ok(sent < 40, "the trickle was never cut off");
    client.conn.close();
    await assertHealthy(srv, normal);
  });
  await t.step("a flood from one IP: one holds the slot, the rest are BUSY", async () => {
    await using srv = await startServer();
    using holder = await RawClient.open(srv.port, "127.0.0.9");
    await holder.sendHead({ op: "audio" }, "mp4", 1000);
    await eventually(() => srv.logs.length >= 0);
    const codes = await Promise.all(
      Array.from(
        { length: 30 },
        () => answerTo(srv, encodeFrameHead({ op: "audio" }, "mp4", 1000), "127.0.0.9"),
      ),
    );
    assert.deepEqual(new Set(codes), new Set(["BUSY"]));
    holder.conn.close();
    await assertHealthy(srv, normal);
  });
  await t.step("connections over --max-connections get BUSY", async () => {
    await using srv = await startServer({ maxConnections: 3 });
    const idle = await Promise.all([1, 2, 3].map((i) => RawClient.open(srv.port, `127.0.1.${i}`)));
    await eventually(() => srv.server.storage.reserved >= 0);
    await new Promise((resolve) => setTimeout(resolve, 100));
    using extra = await RawClient.open(srv.port, "127.0.1.9");
    const reply = await extra.nextFrame();
    assert.equal(reply?.json.code, "BUSY");
    assert.match(String(reply?.json.description), /too many open connections/);
    for (const client of idle) client.conn.close();
    await eventually(async () => (await ffmpegChildren()).length === 0);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await assertHealthy(srv, normal);
  });
  await t.step("decode bombs: frame size, duration and job time are bounded", async () => {
    const big = await makeMedia(join(dir.path, "big.mp4"), { duration: 2, size: "320x240" });
    const long = await makeMedia(join(dir.path, "long.mkv"), {
      video: false,
      duration: 900,
      codecArgs: ["-c:a", "flac"],
    });
    // Real bombs against the default limits: a 0.7 MB file of 16000x16000 frames (384 MB each
    // decoded), and 4 hours of tiny frames in a few hundred KB.
    const huge = await makeMedia(join(dir.path, "huge.mp4"), {
      audio: false,
      duration: 0.04,
      size: "16000x16000",
      codecArgs: ["-frames:v", "1", "-c:v", "libx264", "-preset", "ultrafast"],
    });
    const hours = await makeMedia(join(dir.path, "hours.mkv"), {
      audio: false,
      duration: 4 * 3600 + 60,
      size: "16x16",
      rate: 1,
    });
    const cases: [object, string, string, RegExp][] = [
      [{}, huge, "TOO_LARGE", /16000x16000/],
      [{}, hours, "TOO_LARGE", /lasts 14460 s/],
      [{ maxPixels: 100 * 100 }, big, "TOO_LARGE", /320x240/],
      [{ maxDurationSeconds: 1 }, big, "TOO_LARGE", /lasts 2 s/],
      [{ maxJobSeconds: 1 }, long, "TIMEOUT", /limit of 1 s/],
    ];
    for (const [limits, input, code, description] of cases) {
      await using srv = await startServer({ limits });
      const error = await runJob({
        hostname: "127.0.0.1",
        port: srv.port,
        request: { op: "audio" },
        input,
        output: join(dir.path, "x.mp3"),
      })
        .catch((err) => err);
      assert.equal(error.code, code);
      assert.match(error.message, description);
      await assertHealthy(srv, normal);
    }
  });
});

Deno.test("a disk that fills up during an upload gives STORAGE_FULL and deletes the partial file", async (t) => {
  const mount = await Deno.makeTempDir({ prefix: "mmp-tmpfs-" });
  const mounted = (await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", "size=96m", "tmpfs", mount],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).output().catch(() => ({ success: false }))).success;
  try {
    await t.step({
      name: mounted
        ? "fill the disk mid-upload"
        : "fill the disk mid-upload (ignored: cannot mount a tmpfs here)",
      ignore: !mounted,
      async fn() {
        await using dir = await tempDir();
        const normal = await makeMedia(join(dir.path, "normal.mp4"), {
          duration: 1,
          size: "96x64",
        });
        const storageDir = join(mount, "storage");
        await using srv = await startServer({ storageDir });
        using client = await RawClient.open(srv.port);
        await client.sendHead({ op: "audio" }, "mp4", 20_000_000);
        await client.send(new Uint8Array(1_000_000));
        // Another process fills the disk while the upload is under way.
        await Deno.writeFile(join(mount, "filler"), new Uint8Array(92 * 2 ** 20)).catch(() => {});
        const reply = client.nextFrame();
        for (let i = 0; i < 19; i++) await client.send(new Uint8Array(1_000_000)).catch(() => {});
        assert.equal((await reply)?.json.code, "STORAGE_FULL");
        await Deno.remove(join(mount, "filler"));
        await assertHealthy(srv, normal);
      },
    });
  } finally {
    if (mounted) await new Deno.Command("umount", { args: [mount], stdin: "null" }).output();
    await Deno.remove(mount, { recursive: true });
  }
});

/** A loopback HTTP trap: counts every connection made to it. */
function trap(): { url: string; hits: () => number } & AsyncDisposable {
  let hits = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    hits++;
    return new Response("TRAPPED");
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/x`,
    hits: () => hits,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

Deno.test("uploads that reference other files or URLs are refused and open nothing", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer();
  await using http = trap();
  const normal = await makeMedia(join(dir.path, "normal.mp4"), { duration: 1, size: "96x64" });
  // The "secret" files are named pipes: opening one for reading is recorded.
  await using secretFile = await pipeTrap(join(dir.path, "secret.txt"));
  await using secretMovie = await pipeTrap(join(dir.path, "secret.mp4"));
  const [secret, secretVideo] = [secretFile.path, secretMovie.path];
  const nothingOpened = () => {
    assert.equal(http.hits(), 0, "the HTTP trap was contacted");
    assert.ok(!secretFile.opened() && !secretMovie.opened(), "a secret file was opened");
  };
  // Texts that make media from instructions: refused by name, and by content under another name.
  const graph =
    `testsrc2=size=96x64[out0];movie=${secretVideo}[out1];amovie=file\\:${secret}[out2]\n`;
  const avisynth = `DirectShowSource("${secretVideo}")\nImport("${secret}")\n`;
  const vapoursynth = `import vapoursynth as vs\n` +
    `vs.core.ffms2.Source("${secretVideo}").set_output()\nopen("${secret}").read()\n`;
  const png = join(dir.path, "frame.png");
  await ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=96x64", "-frames:v", "1", png]);
  const uploads: [string, string, string | Uint8Array][] = [
    [
      "HLS playlist",
      "mp4",
      `#EXTM3U\n#EXT-X-TARGETDURATION:5\n#EXTINF:5,\n${secretVideo}\n#EXTINF:5,\nfile:${secret}\n#EXTINF:5,\n${http.url}\n#EXT-X-ENDLIST\n`,
    ],
    ["ffconcat list", "mkv", `ffconcat version 1.0\nfile '${secretVideo}'\nfile '${http.url}'\n`],
    [
      "DASH manifest",
      "mp4",
      `<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT1S"><Period><AdaptationSet><Representation id="1" bandwidth="1"><BaseURL>${http.url}</BaseURL></Representation></AdaptationSet></Period></MPD>`,
    ],
    [
      "SDP session",
      "ts",
      `v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\n`,
    ],
    ["ffmetadata", "mkv", `;FFMETADATA1\ntitle=${secret}\n`],
    ["SRT subtitles", "mkv", `1\n00:00:00,000 --> 00:00:01,000\nfile:${secret} ${http.url}\n`],
    ["a PNG image (image2 and its sequence patterns)", "mp4", await Deno.readFile(png)],
    ["lavfi filter graph", "mp4", graph],
    ["AviSynth script", "mkv", avisynth],
    ["VapourSynth script", "mp4", vapoursynth],
  ];
  for (const [name, media, text] of uploads) {
    await t.step(name, async () => {
      for (
        const request of [{ op: "audio" }, { op: "compress" }, {
          op: "resize",
          resolution: "96x64",
        }]
      ) {
        using client = await RawClient.open(srv.port);
        const bytes = typeof text === "string" ? encoder.encode(text) : text;
        await client.sendHead(request, media, bytes.length);
        await client.send(bytes);
        assert.equal((await client.nextFrame())?.json.type, "accepted");
        const reply = await client.nextFrame();
        assert.equal(reply?.json.type, "error", `${name} ${request.op} produced a result`);
        assert.equal(reply?.json.code, "PROCESSING_FAILED");
        assert.doesNotMatch(JSON.stringify(reply?.json), /TOP-SECRET|\/tmp\/|ffmpeg version/);
      }
      nothingOpened();
      await assertHealthy(srv, normal);
    });
  }
  await t.step("playlists and scripts sent as such are UNSUPPORTED_MEDIA", async () => {
    const hls = `#EXTM3U\n#EXTINF:5,\n${secretVideo}\n#EXTINF:5,\n${http.url}\n#EXT-X-ENDLIST\n`;
    const named: [string, string][] = [
      ["m3u8", hls],
      ["application/vnd.apple.mpegurl", hls],
      ["lavfi", graph],
      ["avs", avisynth],
      ["vpy", vapoursynth],
    ];
    for (const [media, text] of named) {
      using client = await RawClient.open(srv.port);
      const bytes = encoder.encode(text);
      await client.sendHead({ op: "audio" }, media, bytes.length);
      await client.send(bytes).catch(() => {}); // answered early: the server may have closed
      assert.equal((await client.nextFrame())?.json.code, "UNSUPPORTED_MEDIA", media);
    }
    nothingOpened();
    await assertHealthy(srv, normal);
  });
  await t.step("MP4 data references to other files are not followed", async () => {
    const own = await Deno.readFile(
      await makeMedia(join(dir.path, "own.mp4"), { duration: 1, size: "96x64" }),
    );
    for (const target of [secretVideo, secret]) {
      const input = join(dir.path, "dref.mp4");
      await Deno.writeFile(input, externalDataReferences(own, target));
      const outcome = await runJob({
        hostname: "127.0.0.1",
        port: srv.port,
        request: { op: "audio" },
        input,
        output: join(dir.path, `dref-${crypto.randomUUID()}.mp3`),
      }).then(() => "result", (err) => {
        assert.doesNotMatch(err.message, /secret|\/tmp\//);
        return err.code;
      });
      // The tracks say their samples are elsewhere; ffmpeg does not go there (drefs stay off), so
      // the job fails or yields what the upload itself holds.
      assert.ok(["result", "PROCESSING_FAILED"].includes(outcome), outcome);
    }
    nothingOpened();
    await assertHealthy(srv, normal);
  });
});

/** A named pipe at `path` that records whether anything opened it for reading. */
async function pipeTrap(path: string) {
  const made = await new Deno.Command("mkfifo", { args: [path], stdin: "null" }).output();
  assert.ok(made.success, "mkfifo failed");
  let opened = false;
  // Opening the write end completes only once a reader opens the other end.
  const writer = Deno.open(path, { write: true }).then((file) => {
    opened = true;
    file.close(); // the reader sees an empty file
  });
  return {
    path,
    opened: () => opened,
    async [Symbol.asyncDispose]() {
      if (!opened) (await Deno.open(path, { read: true })).close(); // releases the writer
      await writer;
      await Deno.remove(path);
    },
  };
}

/** An MP4 box: 32-bit size, type, body. */
function box(type: string, body: Uint8Array): Uint8Array {
  const head = new Uint8Array(8);
  new DataView(head.buffer).setUint32(0, 8 + body.length);
  head.set(encoder.encode(type), 4);
  return concat(head, body);
}

/**
 * Rewrites every track's data reference (`dref`) so it says the samples live in another file: a
 * Mac alias record (`alis`, the one kind ffmpeg's MOV demuxer can follow, with `enable_drefs`) holding
 * `path` as an absolute path. The `moov` of ffmpeg's MP4 follows `mdat`, so no sample offset moves.
 */
function externalDataReferences(mp4: Uint8Array, path: string): Uint8Array {
  const containers = new Set(["moov", "trak", "mdia", "minf", "dinf"]);
  const name = encoder.encode(path.replaceAll("/", ":"));
  const record = new Uint8Array(4 + name.length + (name.length % 2));
  new DataView(record.buffer).setUint16(0, 2); // type 2: absolute path
  new DataView(record.buffer).setUint16(2, name.length);
  record.set(name, 4);
  // 150 bytes of alias header (volume, file name, levels: unused here), the path, the end mark.
  const alias = concat(
    new Uint8Array(4),
    new Uint8Array(150),
    record,
    new Uint8Array([255, 255, 0, 0]),
  );
  const entries = concat(new Uint8Array([0, 0, 0, 0, 0, 0, 0, 1]), box("alis", alias));
  const rewrite = (bytes: Uint8Array): Uint8Array => {
    const boxes: Uint8Array[] = [];
    for (let offset = 0; offset + 8 <= bytes.length;) {
      const size = new DataView(bytes.buffer, bytes.byteOffset + offset).getUint32(0);
      const type = new TextDecoder().decode(bytes.subarray(offset + 4, offset + 8));
      const body = bytes.subarray(offset + 8, offset + size);
      if (containers.has(type)) boxes.push(box(type, rewrite(body)));
      else if (type === "dref") boxes.push(box(type, entries));
      else boxes.push(bytes.subarray(offset, offset + size));
      offset += size;
    }
    return concat(...boxes);
  };
  return rewrite(mp4);
}

Deno.test("faults: disconnects at every stage free everything at once", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer({ jobs: 1 });
  const normal = await makeMedia(join(dir.path, "normal.mp4"), { duration: 1, size: "96x64" });
  const long = await Deno.readFile(
    await makeMedia(join(dir.path, "long.mkv"), {
      video: false,
      duration: 900,
      codecArgs: ["-c:a", "flac"],
    }),
  );
  const upload = async (ip: string) => {
    const client = await RawClient.open(srv.port, ip);
    await client.sendHead({ op: "audio" }, "mkv", long.length);
    await client.send(long);
    assert.equal((await client.nextFrame())?.json.type, "accepted");
    return client;
  };
  await t.step("while ffmpeg runs: killed within a second", async () => {
    const client = await upload("127.0.2.1");
    assert.ok(await eventually(async () => (await ffmpegChildren()).length > 0));
    client.conn.close();
    assert.ok(await eventually(async () => (await ffmpegChildren()).length === 0, 1000));
    await assertHealthy(srv, normal);
  });
  await t.step("while queued", async () => {
    const running = await upload("127.0.2.2");
    const queued = await upload("127.0.2.3");
    queued.conn.close();
    assert.ok(await eventually(() => srv.server.queue.size.waiting === 0, 1000));
    running.conn.close();
    await assertHealthy(srv, normal);
  });
  await t.step("while the result is being sent", async () => {
    await using big = await startServer();
    const client = await upload.call(null, "127.0.2.4").catch(() => null);
    client?.conn.close();
    using c = await RawClient.open(big.port, "127.0.2.4");
    await c.sendHead({ op: "audio" }, "mkv", long.length);
    await c.send(long);
    await c.nextFrame();
    const result = await c.nextFrame();
    assert.equal(result?.json.type, "result");
    c.conn.close(); // after the head, with megabytes of payload still to come
    assert.deepEqual(await storageSettles(big.storageDir), []);
    assert.ok(await eventually(() => big.logs.some((l) => /client disconnected|ok$/.test(l))));
    await assertHealthy(big, normal);
    await assertHealthy(srv, normal);
  });
});

Deno.test("signals mid-job: a second signal stops cleanly at once, SIGKILL's leftovers go at the next start", async (t) => {
  await using dir = await tempDir();
  const storage = join(dir.path, "storage");
  await Deno.mkdir(storage);
  // An hour of audio: its MP3 encode outlives every wait below unless it is stopped.
  const hour = await Deno.readFile(
    await makeMedia(join(dir.path, "hour.mkv"), {
      video: false,
      duration: 3600,
      codecArgs: ["-c:a", "flac", "-compression_level", "0"],
    }),
  );
  const startJob = async (port: number) => {
    const client = await RawClient.open(port);
    await client.sendHead({ op: "audio" }, "mkv", hour.length);
    await client.send(hour);
    assert.equal((await client.nextFrame())?.json.type, "accepted");
    assert.ok(await eventually(async () => (await ffmpegUsing(storage)).length > 0));
    return client;
  };
  await t.step(
    "SIGTERM drains, then SIGINT: SHUTTING_DOWN to the client, ffmpeg stopped, files deleted, exit 0",
    async () => {
      await using server = await spawnServer(storage);
      using client = await startJob(server.port);
      // The first signal drains: the hour-long job would be let finish (tests/cluster_test.ts).
      server.child.kill("SIGTERM");
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.deepEqual((await ffmpegUsing(storage)).length, 1, "draining keeps the job running");
      server.child.kill("SIGINT");
      assert.equal((await client.nextFrame())?.json.code, "SHUTTING_DOWN");
      const { code, stderr } = await server.ended();
      assert.equal(code, 0, stderr);
      assert.deepEqual(await ffmpegUsing(storage), []);
      assert.deepEqual(await listDir(storage), []);
    },
  );
  await t.step(
    "SIGKILL: ffmpeg dies with the server, the next start removes the files",
    async () => {
      const crashed = await spawnServer(storage);
      using _client = await startJob(crashed.port);
      crashed.child.kill("SIGKILL");
      await crashed.ended();
      // The kernel's parent-death signal, not the end of the encode (that takes seconds more).
      const started = performance.now();
      assert.ok(await eventually(async () => (await ffmpegUsing(storage)).length === 0, 2_000));
      console.log(`ffmpeg gone ${Math.round(performance.now() - started)} ms after the SIGKILL`);
      assert.notDeepEqual(await listDir(storage), [], "the crash should have left files");
      await using restarted = await spawnServer(storage);
      assert.deepEqual(await listDir(storage), []);
      const normal = await makeMedia(join(dir.path, "normal.mp4"), { duration: 1, size: "96x64" });
      const result = await runJob({
        hostname: "127.0.0.1",
        port: restarted.port,
        request: { op: "audio" },
        input: normal,
        output: join(dir.path, "normal.mp3"),
      });
      assert.ok(result.size > 0);
    },
  );
});

Deno.test("a restart on the same storage removes a crashed run's files, and only those", async () => {
  await using dir = await tempDir();
  const leftovers = ["mmp-0123456789abcdef-upload.part", "mmp-fedcba9876543210-input.mp4"];
  for (const name of leftovers) await Deno.writeFile(join(dir.path, name), new Uint8Array(10));
  await Deno.writeTextFile(join(dir.path, "mmp-notes.txt"), "mine");
  await Deno.writeTextFile(join(dir.path, "holiday.mp4"), "mine too");
  await using _server = await serve({
    hostname: "127.0.0.1",
    port: 0,
    storageDir: dir.path,
    log: () => {},
  });
  assert.deepEqual(await listDir(dir.path), ["holiday.mp4", "mmp-notes.txt"]);
});

Deno.test("corrupt media gets PROCESSING_FAILED with a helpful, path-free description", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const normal = await makeMedia(join(dir.path, "normal.mp4"), { duration: 1, size: "96x64" });
  const whole = await Deno.readFile(
    await makeMedia(join(dir.path, "whole.mp4"), { duration: 2, size: "160x120" }),
  );
  const random = new Uint8Array(200_000);
  for (let i = 0; i < random.length; i += 65536) {
    crypto.getRandomValues(random.subarray(i, i + 65536));
  }
  const damaged = whole.slice();
  for (let i = 4000; i < damaged.length; i += 997) damaged[i] = 0x55;
  const files: [string, Uint8Array][] = [
    ["random bytes named .mp4", random],
    ["a truncated MP4", whole.slice(0, 3000)],
    ["an MP4 with damaged frames", damaged],
  ];
  for (const [name, bytes] of files) {
    await t.step(name, async () => {
      const path = join(dir.path, "bad.mp4");
      await Deno.writeFile(path, bytes);
      const outcome = await runJob({
        hostname: "127.0.0.1",
        port: srv.port,
        request: { op: "resize", resolution: "96x64" },
        input: path,
        output: join(dir.path, "bad-out.mp4"),
        force: true,
      })
        .then(() => "result", (err) => err);
      if (outcome !== "result") {
        assert.equal(outcome.code, "PROCESSING_FAILED");
        assert.doesNotMatch(`${outcome.message} ${outcome.solution}`, /\/|ffmpeg version|\[/);
        assert.ok(outcome.solution.length > 10);
      }
      await assertHealthy(srv, normal);
    });
  }
});
