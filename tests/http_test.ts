/**
 * The HTTP API (docs/http.md) against a real server: every endpoint, the rules it shares with MMP
 * (one job per IP across both, quota before the body, nothing left on disk) and its own security.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { type IncomingHttpHeaders, request as httpRequest } from "node:http";
import {
  eventually,
  ffmpegChildren,
  join,
  listDir,
  makeMedia,
  quotaReleased,
  RawClient,
  startServer,
  storageSettles,
  tempDir,
  type TestServer,
} from "./_helpers.ts";

interface Reply {
  status: number;
  headers: Headers;
  // deno-lint-ignore no-explicit-any
  json: any;
}

/** A request from 127.0.0.1 with `fetch`; the body is read whole. */
async function call(srv: TestServer, path: string, init: RequestInit = {}): Promise<Reply> {
  const response = await fetch(`${srv.httpUrl}${path}`, init);
  const text = await response.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch { /* not JSON */ }
  return { status: response.status, headers: response.headers, json };
}

/** `POST /api/jobs?QUERY` with the file as the body. */
function post(
  srv: TestServer,
  query: string,
  body: Uint8Array<ArrayBuffer>,
  headers: Record<string, string> = {},
): Promise<Reply> {
  return call(srv, `/api/jobs?${query}`, {
    method: "POST",
    body,
    headers: { "Content-Type": "application/octet-stream", ...headers },
  });
}

interface NodeReply {
  status: number;
  headers: IncomingHttpHeaders;
  // deno-lint-ignore no-explicit-any
  json: any;
}

/**
 * A request through `node:http`, which can pick its source address and send a partial body.
 * `send` writes (part of) the body; the reply comes whenever the server answers.
 */
function open(
  srv: TestServer,
  path: string,
  options: { method?: string; headers?: Record<string, string>; localAddress?: string } = {},
) {
  const req = httpRequest({
    host: "127.0.0.1",
    port: srv.httpPort,
    path,
    method: options.method ?? "GET",
    headers: options.headers ?? {},
    agent: false,
    ...(options.localAddress ? { localAddress: options.localAddress } : {}),
  });
  const reply = new Promise<NodeReply>((resolve, reject) => {
    req.on("response", (res) => {
      let text = "";
      res.on("data", (chunk) => text += chunk);
      res.on("end", () => {
        let json: unknown = text;
        try {
          json = JSON.parse(text);
        } catch { /* not JSON */ }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, json });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
  });
  reply.catch(() => {});
  return {
    reply,
    send: (bytes: Uint8Array) => new Promise<void>((resolve) => req.write(bytes, () => resolve())),
    headersOnly: () => req.flushHeaders(),
    end: (bytes?: Uint8Array) => req.end(bytes),
    destroy: () => req.destroy(),
  };
}

/** A whole request through `node:http` from `localAddress`. */
async function nodeCall(
  srv: TestServer,
  path: string,
  options: { method?: string; headers?: Record<string, string>; localAddress?: string } = {},
  body?: Uint8Array,
): Promise<NodeReply> {
  const request = open(srv, path, options);
  request.end(body);
  try {
    return await request.reply;
  } finally {
    request.destroy();
  }
}

/** Polls `GET /api/jobs/ID` until the job has finished one way or another. */
async function finished(srv: TestServer, id: string): Promise<Reply> {
  for (let i = 0; i < 300; i++) {
    const reply = await call(srv, `/api/jobs/${id}`);
    if (!["queued", "running"].includes(reply.json.state)) return reply;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error("the job never finished");
}

/** Server-Sent Events of a finished stream. */
function parseEvents(text: string): { event: string; data: Record<string, unknown> }[] {
  return text.split("\n\n").filter((block) => block.trim()).map((block) => {
    const event = /^event: (.*)$/m.exec(block)?.[1] ?? "message";
    const data = JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? "null");
    return { event, data };
  });
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Seconds of FLAC in Matroska: the audio op on it takes long enough to watch. */
function flac(path: string, seconds: number): Promise<string> {
  return makeMedia(path, { video: false, duration: seconds, codecArgs: ["-c:a", "flac"] });
}

Deno.test("an HTTP job: 202, status, events until the result, ranges, deleted once downloaded", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const bytes = await Deno.readFile(await flac(join(dir.path, "talk.mkv"), 600));

  const info = await call(srv, "/api/info");
  assert.equal(info.status, 200);
  for (
    const key of ["type", "version", "operations", "input_formats", "output_formats", "limits"]
  ) {
    assert.ok(key in info.json, `info has no ${key}`);
  }

  const accepted = await post(srv, `op=audio&name=${encodeURIComponent("café talk.mkv")}`, bytes, {
    "X-Content-SHA256": sha256(bytes),
  });
  assert.equal(accepted.status, 202, JSON.stringify(accepted.json));
  const id = accepted.json.job;
  assert.match(id, /^[0-9a-f]{32}$/);
  assert.ok(["queued", "running"].includes(accepted.json.state));
  assert.equal(accepted.json.queue_position, 0);
  assert.equal(accepted.headers.get("location"), `/api/jobs/${id}`);
  assert.match(accepted.headers.get("content-security-policy") ?? "", /default-src 'none'/);
  assert.equal(accepted.headers.get("x-content-type-options"), "nosniff");
  assert.equal(accepted.headers.get("access-control-allow-origin"), null);

  const status = await call(srv, `/api/jobs/${id}`);
  assert.equal(status.status, 200);
  assert.equal(status.json.job, id);
  assert.ok(["queued", "running", "done"].includes(status.json.state));
  assert.ok(status.json.progress >= 0 && status.json.progress <= 1);

  const events = await call(srv, `/api/jobs/${id}/events`);
  assert.match(events.headers.get("content-type") ?? "", /^text\/event-stream/);
  const list = parseEvents(events.json);
  assert.ok(list.length >= 2, events.json);
  assert.equal(list[0]!.event, "status");
  assert.ok(list.slice(0, -1).every((e) => e.event === "status"));
  const last = list.at(-1)!;
  assert.equal(last.event, "result");
  assert.equal(last.data.state, "done");
  const result = last.data.result as Record<string, unknown>;
  assert.equal(result.name, "café talk.mp3");
  assert.match(String(result.sha256), /^[0-9a-f]{64}$/);
  const size = Number(result.size);
  assert.ok(size > 100_000);

  const done = await call(srv, `/api/jobs/${id}`);
  assert.equal(done.json.state, "done");
  assert.equal(done.json.progress, 1);
  assert.deepEqual(done.json.result, result);

  const head = await fetch(`${srv.httpUrl}/api/jobs/${id}/result`, {
    headers: { Range: "bytes=0-99" },
  });
  assert.equal(head.status, 206);
  assert.equal(head.headers.get("content-range"), `bytes 0-99/${size}`);
  assert.equal(head.headers.get("content-length"), "100");
  const first = await head.bytes();
  assert.equal(first.length, 100);
  const beyond = await call(srv, `/api/jobs/${id}/result`, {
    headers: { Range: `bytes=${size}-` },
  });
  assert.equal(beyond.status, 416);
  assert.equal(beyond.headers.get("content-range"), `bytes */${size}`);
  assert.equal((await call(srv, `/api/jobs/${id}`)).status, 200, "a range must not end the job");

  const whole = await fetch(`${srv.httpUrl}/api/jobs/${id}/result`);
  assert.equal(whole.status, 200);
  assert.equal(whole.headers.get("content-type"), "audio/mpeg");
  assert.equal(whole.headers.get("accept-ranges"), "bytes");
  assert.equal(whole.headers.get("content-length"), String(size));
  assert.equal(whole.headers.get("x-content-sha256"), result.sha256);
  assert.equal(
    whole.headers.get("content-disposition"),
    `attachment; filename="caf_ talk.mp3"; filename*=UTF-8''caf%C3%A9%20talk.mp3`,
  );
  const body = await whole.bytes();
  assert.equal(sha256(body), result.sha256);
  assert.deepEqual(body.subarray(0, 100), first);

  // Downloaded once, completely: the result and the job are gone, the quota is free.
  assert.deepEqual(await storageSettles(srv.storageDir), []);
  assert.ok(await eventually(() => srv.server.storage.reserved === 0));
  assert.equal((await call(srv, `/api/jobs/${id}`)).status, 404);
  assert.equal((await call(srv, `/api/jobs/${id}/result`)).status, 404);
  assert.match(srv.logs.join("\n"), new RegExp(`job ${id} 127\\.0\\.0\\.1 audio .* ok \\(http\\)`));
});

Deno.test("a result frees the IP at once and is deleted after the TTL when never downloaded", async () => {
  await using dir = await tempDir();
  await using srv = await startServer({ resultTtlSeconds: 1 });
  const bytes = await Deno.readFile(await makeMedia(join(dir.path, "a.mp4"), { duration: 1 }));
  const first = await post(srv, "op=audio&name=a.mp4", bytes);
  assert.equal(first.status, 202);
  assert.equal((await finished(srv, first.json.job)).json.state, "done");
  assert.ok((await listDir(srv.storageDir)).length > 0, "the result should wait on disk");
  assert.ok(srv.server.storage.reserved > 0, "the result should count in the quota");
  // The IP's slot is free while the result waits: the next file is accepted at once.
  const second = await post(srv, "op=audio", bytes, { "Content-Type": "video/mp4" });
  assert.equal(second.status, 202, JSON.stringify(second.json));
  assert.equal((await finished(srv, second.json.job)).json.state, "done");
  assert.deepEqual(await storageSettles(srv.storageDir, 4000), []);
  await quotaReleased(srv);
  assert.equal((await call(srv, `/api/jobs/${first.json.job}`)).status, 404);
  assert.match(srv.logs.join("\n"), /result expired \(http\)/);
});

Deno.test("one job per IP across MMP and HTTP", async () => {
  await using srv = await startServer();
  // An MMP upload from 127.0.0.2, held open mid-payload, holds the IP's slot...
  using holder = await RawClient.open(srv.port, "127.0.0.2");
  await holder.sendHead({ op: "audio" }, "mp4", 1_000_000);
  await holder.send(new Uint8Array(1000));
  assert.ok(await eventually(async () => (await listDir(srv.storageDir)).length > 0));
  // ...so an HTTP job from it is refused before its body is read.
  const refused = open(srv, "/api/jobs?op=audio&name=a.mp4", {
    method: "POST",
    headers: { "Content-Length": "1000000" },
    localAddress: "127.0.0.2",
  });
  refused.headersOnly();
  const busy = await refused.reply;
  refused.destroy();
  assert.equal(busy.status, 409);
  assert.equal(busy.json.code, "BUSY");
  assert.ok(busy.json.description.length > 0 && busy.json.solution.length > 0);
  holder.conn.close();

  // An HTTP upload in flight from 127.0.0.3 holds its slot against MMP...
  const upload = open(srv, "/api/jobs?op=audio&name=a.mp4", {
    method: "POST",
    headers: { "Content-Length": "1000000" },
    localAddress: "127.0.0.3",
  });
  await upload.send(new Uint8Array(200_000));
  assert.ok(await eventually(async () => (await listDir(srv.storageDir)).length > 0));
  {
    using mmp = await RawClient.open(srv.port, "127.0.0.3");
    await mmp.sendHead({ op: "audio" }, "mp4", 1000);
    assert.equal((await mmp.nextFrame())?.json.code, "BUSY");
  }
  // ...until the client drops it: the partial file goes and the slot is free again.
  upload.destroy();
  assert.deepEqual(await storageSettles(srv.storageDir), []);
  assert.ok(await eventually(() => srv.server.storage.reserved === 0));
  using next = await RawClient.open(srv.port, "127.0.0.3");
  await next.sendHead({ op: "audio" }, "mp4", 4);
  await next.send(new Uint8Array(4));
  assert.notEqual((await next.nextFrame())?.json.code, "BUSY");
});

Deno.test("refusals decided from the request line and headers come before the body", async (t) => {
  // Room for one small job (an upload and its 64 MiB output allowance), not for a 1 GB upload.
  await using srv = await startServer({ maxStorage: 100_000_000 });
  await t.step("507 STORAGE_FULL with a body that is never sent", async () => {
    const request = open(srv, "/api/jobs?op=audio&name=big.mp4", {
      method: "POST",
      headers: { "Content-Length": "1000000000" },
    });
    request.headersOnly();
    const reply = await request.reply;
    request.destroy();
    assert.equal(reply.status, 507);
    assert.equal(reply.json.code, "STORAGE_FULL");
    assert.match(reply.json.description, /room/);
    await quotaReleased(srv);
  });
  await t.step("413 TOO_LARGE over 1 TiB, the most any upload may be", async () => {
    const request = open(srv, "/api/jobs?op=audio&name=big.mp4", {
      method: "POST",
      headers: { "Content-Length": String(2 ** 41) },
    });
    request.headersOnly();
    const reply = await request.reply;
    request.destroy();
    assert.equal(reply.status, 413);
    assert.equal(reply.json.code, "TOO_LARGE");
  });
  await t.step("411 without Content-Length", async () => {
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array(10));
        controller.close();
      },
    });
    const reply = await call(srv, "/api/jobs?op=audio&name=a.mp4", { method: "POST", body });
    assert.equal(reply.status, 411);
    assert.equal(reply.json.code, "BAD_REQUEST");
  });
  const small = new Uint8Array(1000);
  const cases: [string, string, Record<string, string>, number, string][] = [
    ["unknown op", "op=explode&name=a.mp4", {}, 400, "BAD_REQUEST"],
    ["missing argument", "op=resize&name=a.mp4", {}, 400, "BAD_REQUEST"],
    ["unknown argument", "op=audio&bitrate=320&name=a.mp4", {}, 400, "BAD_REQUEST"],
    ["injection", "op=resize&resolution=320x240,drawbox&name=a.mp4", {}, 400, "BAD_REQUEST"],
    ["bad clip time", "op=clip&start=x&end=2&format=gif&name=a.mp4", {}, 400, "BAD_REQUEST"],
    [
      "unsupported media",
      "op=audio&name=notes.txt",
      { "Content-Type": "text/plain" },
      415,
      "UNSUPPORTED_MEDIA",
    ],
    ["no media type", "op=audio", {}, 415, "UNSUPPORTED_MEDIA"],
    ["bad sha256 header", "op=audio&name=a.mp4", { "X-Content-SHA256": "xyz" }, 400, "BAD_REQUEST"],
  ];
  for (const [name, query, headers, status, code] of cases) {
    await t.step(`${status} ${name}`, async () => {
      const reply = await post(srv, query, small, headers);
      assert.equal(reply.status, status, JSON.stringify(reply.json));
      assert.equal(reply.json.code, code);
      assert.ok(reply.json.description.length > 0 && reply.json.solution.length > 0);
    });
  }
  await t.step("422 CHECKSUM_MISMATCH after the body, nothing kept", async () => {
    const reply = await post(srv, "op=audio&name=a.mp4", small, {
      "X-Content-SHA256": "0".repeat(64),
    });
    assert.equal(reply.status, 422);
    assert.equal(reply.json.code, "CHECKSUM_MISMATCH");
  });
  await t.step("numeric clip times from the query string are accepted", async () => {
    // Valid arguments: refused only later, for the media (the fake file is not a video).
    const reply = await post(srv, "op=clip&start=0.5&end=1:02.5&format=webm&name=a.mp4", small);
    assert.equal(reply.status, 202, JSON.stringify(reply.json));
    assert.equal((await finished(srv, reply.json.job)).json.error.code, "PROCESSING_FAILED");
  });
  assert.deepEqual(await storageSettles(srv.storageDir), []);
  assert.ok(await eventually(() => srv.server.storage.reserved === 0));
});

Deno.test("an HTTP upload that stalls gets TIMEOUT and its partial file is deleted", async () => {
  await using srv = await startServer({ idleTimeoutSeconds: 1 });
  const upload = open(srv, "/api/jobs?op=audio&name=a.mp4", {
    method: "POST",
    headers: { "Content-Length": "1000000" },
  });
  await upload.send(new Uint8Array(300_000));
  const reply = await upload.reply;
  upload.destroy();
  assert.equal(reply.status, 408);
  assert.equal(reply.json.code, "TIMEOUT");
  assert.deepEqual(await storageSettles(srv.storageDir), []);
  await quotaReleased(srv);
});

Deno.test("Origin and Host from elsewhere are refused; other paths are 404", async (t) => {
  await using srv = await startServer();
  await t.step("POST and DELETE with a foreign Origin: 403", async () => {
    const foreign = { Origin: "http://evil.example" };
    const posted = await post(srv, "op=audio&name=a.mp4", new Uint8Array(10), foreign);
    assert.equal(posted.status, 403);
    assert.equal(posted.json.code, "BAD_REQUEST");
    assert.match(posted.json.description, /other web sites/);
    const deleted = await call(srv, `/api/jobs/${"0".repeat(32)}`, {
      method: "DELETE",
      headers: foreign,
    });
    assert.equal(deleted.status, 403);
    const opaque = await post(srv, "op=audio&name=a.mp4", new Uint8Array(10), { Origin: "null" });
    assert.equal(opaque.status, 403);
  });
  await t.step("the server's own Origin passes", async () => {
    const own = await post(srv, "op=explode&name=a.mp4", new Uint8Array(10), {
      Origin: srv.httpUrl,
    });
    assert.equal(own.status, 400);
  });
  await t.step("a Host the server does not answer to: 421 (DNS rebinding)", async () => {
    for (const host of ["evil.example", `evil.example:${srv.httpPort}`, "127.0.0.1.evil.example"]) {
      const reply = await nodeCall(srv, "/", { headers: { Host: host } });
      assert.equal(reply.status, 421, host);
      assert.equal(reply.json.code, "BAD_REQUEST");
      assert.match(String(reply.headers["content-security-policy"]), /frame-ancestors 'none'/);
    }
    const local = await nodeCall(srv, "/api/info", {
      headers: { Host: `localhost:${srv.httpPort}` },
    });
    assert.equal(local.status, 200);
  });
  await t.step("only the page's own files are served", async () => {
    const page = await call(srv, "/");
    if (page.status === 200) {
      assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
    } else assert.equal(page.status, 404); // the page is being written
    assert.match(page.headers.get("content-security-policy") ?? "", /script-src 'self'/);
    for (const path of ["/index.html", "/page/app.js", "/%2e%2e/deno.json", "/api/nothing"]) {
      assert.equal((await call(srv, path)).status, 404, path);
    }
    assert.equal((await nodeCall(srv, "/../../etc/passwd")).status, 404);
    const wrong = await call(srv, "/api/info", { method: "POST", body: "x" });
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get("allow"), "GET, HEAD");
  });
});

Deno.test("a job is visible to its own IP only, and DELETE cancels it mid-job", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const bytes = await Deno.readFile(await flac(join(dir.path, "long.mkv"), 600));
  const accepted = await post(srv, "op=audio&name=long.mkv", bytes);
  assert.equal(accepted.status, 202);
  const id = accepted.json.job;
  assert.ok(await eventually(async () => (await ffmpegChildren()).length > 0), "ffmpeg never ran");

  for (const method of ["GET", "DELETE"]) {
    const other = await nodeCall(srv, `/api/jobs/${id}`, { method, localAddress: "127.0.0.2" });
    assert.equal(other.status, 404, method);
  }
  const events = await nodeCall(srv, `/api/jobs/${id}/events`, { localAddress: "127.0.0.2" });
  assert.equal(events.status, 404);
  assert.equal((await call(srv, `/api/jobs/${"f".repeat(32)}`)).status, 404);

  // An event stream the client leaves early stops its timer (the sanitizers would say).
  const watcher = new AbortController();
  const stream = await fetch(`${srv.httpUrl}/api/jobs/${id}/events`, { signal: watcher.signal });
  const reader = stream.body!.getReader();
  assert.match(new TextDecoder().decode((await reader.read()).value), /^event: status/);
  watcher.abort();
  await reader.cancel().catch(() => {});

  const cancelled = await call(srv, `/api/jobs/${id}`, { method: "DELETE" });
  assert.equal(cancelled.status, 200);
  assert.equal(cancelled.json.state, "cancelled");
  assert.deepEqual(await storageSettles(srv.storageDir, 1000), []);
  assert.ok(await eventually(async () => (await ffmpegChildren()).length === 0, 1000));
  await quotaReleased(srv);
  const after = await call(srv, `/api/jobs/${id}`);
  assert.equal(after.json.state, "cancelled");
  assert.equal(after.json.error.code, "CANCELLED");
  const result = await call(srv, `/api/jobs/${id}/result`);
  assert.equal(result.status, 409);
  assert.equal(result.json.code, "CANCELLED");
  const tail = parseEvents((await call(srv, `/api/jobs/${id}/events`)).json);
  assert.deepEqual(tail.map((e) => e.event), ["error"]);
});

Deno.test("MMP info answers one JSON frame without taking the IP's slot", async () => {
  await using srv = await startServer();
  using holder = await RawClient.open(srv.port, "127.0.0.5");
  await holder.sendHead({ op: "audio" }, "mp4", 1_000_000);
  await holder.send(new Uint8Array(1000));
  using client = await RawClient.open(srv.port, "127.0.0.5");
  await client.sendHead({ op: "info" });
  const reply = await client.nextFrame();
  assert.equal(reply?.json.type, "info");
  for (const key of ["version", "operations", "input_formats", "output_formats", "limits"]) {
    assert.ok(key in reply!.json, `info has no ${key}`);
  }
  assert.equal(reply?.header.mediaSize, 0);
  assert.equal(reply?.header.payloadSize, 0);
  assert.equal(await client.nextFrame(), null, "the exchange should end after info");
  const http = await call(srv, "/api/info");
  assert.deepEqual(http.json, reply?.json);
  holder.conn.close();
  assert.deepEqual(await storageSettles(srv.storageDir), []);
});

Deno.test("shutdown ends HTTP uploads, event streams and waiting results, and deletes every file", async () => {
  await using dir = await tempDir();
  await using srv = await startServer();
  const small = await Deno.readFile(await makeMedia(join(dir.path, "a.mp4"), { duration: 1 }));
  const waiting = await post(srv, "op=audio&name=a.mp4", small);
  assert.equal((await finished(srv, waiting.json.job)).json.state, "done");
  const long = await Deno.readFile(await flac(join(dir.path, "long.mkv"), 600));
  const running = await post(srv, "op=audio&name=long.mkv", long);
  assert.equal(running.status, 202);
  const events = await fetch(`${srv.httpUrl}/api/jobs/${running.json.job}/events`);
  const upload = open(srv, "/api/jobs?op=audio&name=b.mp4", {
    method: "POST",
    headers: { "Content-Length": "1000000" },
    localAddress: "127.0.0.2",
  });
  await upload.send(new Uint8Array(100_000));
  assert.ok(await eventually(async () => (await ffmpegChildren()).length > 0), "ffmpeg never ran");

  await srv.server.shutdown();
  const last = parseEvents(await events.text()).at(-1)!;
  assert.equal(last.event, "error");
  assert.equal((last.data.error as Record<string, unknown>).code, "SHUTTING_DOWN");
  const refused = await upload.reply;
  upload.destroy();
  assert.equal(refused.status, 503);
  assert.equal(refused.json.code, "SHUTTING_DOWN");
  assert.deepEqual(await listDir(srv.storageDir), []);
  assert.deepEqual(await ffmpegChildren(), []);
});

Deno.test("--http-allowed-hosts replaces the default names", async () => {
  await using srv = await startServer({ http: { port: 0, allowedHosts: ["mmp.example"] } });
  const named = await nodeCall(srv, "/api/info", { headers: { Host: "MMP.example:80" } });
  assert.equal(named.status, 200);
  assert.equal((await nodeCall(srv, "/api/info")).status, 421);
  await using open = await startServer();
  const ip = await nodeCall(open, "/api/info", { headers: { Host: "192.0.2.7:8080" } });
  assert.equal(ip.status, 200, "an IP address cannot be a rebound DNS name");
});
