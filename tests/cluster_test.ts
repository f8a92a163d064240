/**
 * The cluster (issue 13): real HAProxy, real Redis, real `mmp serve` nodes, clients from 127.0.0.2….
 * Skipped with a message when haproxy or redis-server is missing (.ci/run installs them).
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { ConnectionError, runJob } from "../src/client/client.ts";
import { encodeFrameHead } from "../src/protocol/frame.ts";
import { V2_SIGNATURE } from "../src/cluster/proxy_protocol.ts";
import { clusterToolsMissing, startCluster } from "../deploy/cluster.ts";
import {
  buildPermissions,
  eventually,
  join,
  listDir,
  makeMedia,
  RawClient,
  startServer,
  storageSettles,
  tempDir,
} from "./_helpers.ts";

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));
const missing = await clusterToolsMissing();
if (missing.length > 0) {
  console.warn(
    `cluster tests skipped: ${missing.join(", ")} not installed (.ci/run installs them)`,
  );
}

/** A PROXY v2 header for a TCP4 client `ip:port`. */
function proxyV2(ip: string, port = 40000, command = 1): Uint8Array {
  const body = [...ip.split(".").map(Number), 127, 0, 0, 1, port >> 8, port & 0xff, 0x23, 0x28];
  return new Uint8Array([...V2_SIGNATURE, 0x20 | command, 0x11, 0, body.length, ...body]);
}

/** Resolves when the server closed the connection without an answer. */
async function closedUnanswered(client: RawClient): Promise<void> {
  const frame = await client.nextFrame().catch(() => null);
  assert.equal(frame, null, `expected a silent close, got ${JSON.stringify(frame?.json)}`);
}

/** Sound only, `seconds` long, FLAC in Matroska: an MP3 job of about seconds/150 s of CPU. */
function makeSound(path: string, seconds: number): Promise<string> {
  return makeMedia(path, {
    video: false,
    duration: seconds,
    codecArgs: ["-c:a", "flac", "-compression_level", "0"],
  });
}

Deno.test("PROXY protocol: the balancer's header names the client, anything else is closed unread", async (t) => {
  await using dir = await tempDir();
  await using srv = await startServer({ proxyProtocol: ["127.0.0.9"], http: false });
  const input = await Deno.readFile(await makeSound(join(dir.path, "a.mkv"), 1));
  const request = encodeFrameHead({ op: "audio" }, "mkv", input.length);
  const job = async (client: RawClient, prefix: Uint8Array) => {
    await client.send(new Uint8Array([...prefix, ...request]));
    await client.send(input);
    assert.equal((await client.nextFrame())?.json.type, "accepted");
    assert.equal((await client.nextFrame())?.json.type, "result");
  };
  await t.step(
    "a v2 header from the balancer: the job counts for the client it names",
    async () => {
      using client = await RawClient.open(srv.port, "127.0.0.9");
      await job(client, proxyV2("192.0.2.7"));
      assert.ok(await eventually(() => srv.logs.some((l) => / 192\.0\.2\.7 audio .* ok$/.test(l))));
    },
  );
  await t.step("a v1 header, sent in pieces", async () => {
    using client = await RawClient.open(srv.port, "127.0.0.9");
    const v1 = new TextEncoder().encode("PROXY TCP4 198.51.100.4 127.0.0.1 5000 9000\r\n");
    await client.send(v1.subarray(0, 9));
    await new Promise((resolve) => setTimeout(resolve, 50));
    await job(client, v1.subarray(9));
    assert.ok(await eventually(() => srv.logs.some((l) => / 198\.51\.100\.4 audio /.test(l))));
  });
  await t.step(
    "LOCAL health checks: no job, no log line; then a job as the socket's IP",
    async () => {
      const before = srv.logs.length;
      for (let i = 0; i < 3; i++) {
        using check = await RawClient.open(srv.port, "127.0.0.9");
        await check.send(proxyV2("0.0.0.0", 0, 0));
      }
      using client = await RawClient.open(srv.port, "127.0.0.9");
      await job(client, proxyV2("0.0.0.0", 0, 0));
      assert.ok(await eventually(() => srv.logs.length === before + 1));
      assert.match(srv.logs.at(-1)!, / 127\.0\.0\.9 audio .* ok$/);
    },
  );
  await t.step("no header from the balancer: closed, nothing stored", async () => {
    using client = await RawClient.open(srv.port, "127.0.0.9");
    await client.send(request);
    await closedUnanswered(client);
  });
  await t.step("a header from an address that is not a balancer: closed", async () => {
    using client = await RawClient.open(srv.port, "127.0.0.10");
    await client.send(new Uint8Array([...proxyV2("192.0.2.8"), ...request]));
    await closedUnanswered(client);
    using v1 = await RawClient.open(srv.port, "127.0.0.10");
    await v1.send(new TextEncoder().encode("PROXY TCP4 192.0.2.8 127.0.0.1 1 2\r\n"));
    await closedUnanswered(v1);
  });
  await t.step("garbage and truncated headers: closed (a stalled one within 3 s)", async () => {
    using garbage = await RawClient.open(srv.port, "127.0.0.9");
    await garbage.send(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
    await closedUnanswered(garbage);
    using cut = await RawClient.open(srv.port, "127.0.0.9");
    await cut.send(proxyV2("192.0.2.9").subarray(0, 20));
    const started = performance.now();
    await closedUnanswered(cut);
    const waited = performance.now() - started;
    assert.ok(waited > 2500 && waited < 4500, `closed after ${waited} ms`);
  });
  await t.step("a direct client without a header is served as before", async () => {
    using client = await RawClient.open(srv.port, "127.0.0.11");
    await job(client, new Uint8Array());
  });
  assert.deepEqual(await storageSettles(srv.storageDir), []);
  assert.ok(srv.logs.filter((l) => /closed unread/.test(l)).length >= 4);
});

Deno.test("the CPU budget: two MP3 jobs run at once on 2 cores, one beside a compress only on a lent thread", async () => {
  await using dir = await tempDir();
  await using srv = await startServer({ cpus: 2, http: false });
  const sound = await Deno.readFile(await makeSound(join(dir.path, "s.mkv"), 600));
  const film = await Deno.readFile(
    await makeMedia(join(dir.path, "f.mp4"), { duration: 20, size: "640x360" }),
  );
  const start = async (ip: string, op: string, type: string, bytes: Uint8Array) => {
    const client = await RawClient.open(srv.port, ip);
    await client.sendHead({ op }, type, bytes.length);
    await client.send(bytes);
    assert.equal((await client.nextFrame())?.json.type, "accepted");
    return client;
  };
  const queue = srv.server.queue;
  {
    using _a = await start("127.0.0.2", "audio", "mkv", sound);
    using _b = await start("127.0.0.3", "audio", "mkv", sound);
    assert.deepEqual(queue.size, { running: 2, waiting: 0 });
    assert.equal(queue.usedThreads, 2);
  }
  assert.ok(await eventually(() => queue.size.running === 0));
  {
    // The compress is charged both threads; the MP3 runs beside it only on a thread the compress
    // lends in a one-thread phase (its ffprobe, a probe's measurement), as a borrower.
    using _c = await start("127.0.0.4", "compress", "mp4", film);
    using _d = await start("127.0.0.5", "audio", "mkv", sound);
    const seen = new Set<string>();
    for (let i = 0; i < 3000 && queue.size.running + queue.size.waiting > 0; i++) {
      const { running, waiting } = queue.size;
      seen.add(`${running}+${waiting}`);
      if (running === 2) assert.equal(queue.borrowers, 1);
      if (waiting === 1) assert.equal(srv.server.agentReport(), "up ready 1%");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok(seen.has("1+1") || seen.has("2+0"), [...seen].join(" "));
  }
  assert.ok(await eventually(() => queue.size.running === 0 && queue.size.waiting === 0));
  assert.equal(srv.server.agentReport(), "up ready 100%");
});

Deno.test({
  name: "a cluster behind HAProxy shares one job per IP over Redis, survives a dead node, " +
    "a Redis outage and a drain",
  ignore: missing.length > 0,
  fn: async (t) => {
    await using dir = await tempDir();
    const soundPath = await makeSound(join(dir.path, "sound.mkv"), 300);
    const sound = await Deno.readFile(soundPath);
    const small = await makeSound(join(dir.path, "small.mkv"), 1);
    await using cluster = await startCluster({ nodes: 3, leaseTtlSeconds: 2, cpus: 1 });
    const lease = (ip: string) => cluster.redisCli("pttl", `mmp:ip:${ip}`).then(Number);
    const viaHaproxy = (ip: string) => RawClient.open(cluster.port, ip);
    /** A raw client straight to a node, with the header HAProxy would send for `ip`. */
    const direct = async (port: number, ip: string) => {
      const client = await RawClient.open(port);
      await client.send(proxyV2(ip));
      return client;
    };
    /**
     * HAProxy's view of the nodes lags by its check interval (500 ms here): a node that was full a
     * moment ago may still count as full. New connections wait until every live node is UP again.
     */
    const allUp = async () =>
      assert.ok(
        await eventually(
          async () => {
            // A killed node stays DOWN; every other must be UP (not counted full, not in a check).
            const states = Object.values(await cluster.serverStates());
            return states.includes("UP") && states.every((s) => s === "UP" || s === "DOWN");
          },
          5000,
        ),
        JSON.stringify(await cluster.serverStates()),
      );
    const smallJob = async (ip: string) => {
      await allUp();
      return await runJob({
        hostname: "127.0.0.1",
        port: cluster.port,
        localAddress: ip,
        request: { op: "audio" },
        input: small,
        output: join(dir.path, `small-${ip}-${crypto.randomUUID()}.mp3`),
        pollMs: 200,
      });
    };

    await t.step(
      "three IPs land on three nodes; the same IP again is BUSY on every node",
      async () => {
        const clients: RawClient[] = [];
        try {
          for (const ip of ["127.0.0.2", "127.0.0.3", "127.0.0.4"]) {
            const client = await viaHaproxy(ip);
            clients.push(client);
            await client.sendHead({ op: "audio" }, "mkv", sound.length);
            await client.send(sound.subarray(0, 1 << 20)); // half-way: the job holds its IP
            assert.ok(await eventually(async () => (await lease(ip)) > 0));
          }
          const uploads = await Promise.all(cluster.nodes.map((node) => listDir(node.storage)));
          assert.deepEqual(uploads.map((names) => names.length), [1, 1, 1], String(uploads));
          for (const via of ["haproxy", ...cluster.nodes.map((node) => node.name)]) {
            const node = cluster.nodes.find((n) => n.name === via);
            using again = node
              ? await direct(node.port, "127.0.0.2")
              : await viaHaproxy("127.0.0.2");
            await again.sendHead({ op: "audio" }, "mkv", sound.length);
            const answer = (await again.nextFrame())?.json;
            assert.equal(answer?.code, "BUSY", `${via}: ${JSON.stringify(answer)}`);
            assert.match(String(answer?.solution), /lapses [12] s after it stops/);
          }
          for (const client of clients) await client.send(sound.subarray(1 << 20));
          for (const [i, client] of clients.entries()) {
            assert.equal((await client.nextFrame())?.json.type, "accepted");
            const result = await client.nextFrame();
            assert.equal(result?.json.type, "result", `client ${i}`);
            client.conn.close();
          }
        } finally {
          for (const client of clients) client[Symbol.dispose]();
        }
        // The lease goes with the result, not with the TTL.
        assert.ok(await eventually(async () => (await lease("127.0.0.2")) === -2, 500));
        assert.ok((await smallJob("127.0.0.2")).size > 0);
      },
    );

    await t.step(
      "Redis down: new jobs get UNAVAILABLE, a running job finishes, then it recovers",
      async () => {
        await allUp();
        using running = await viaHaproxy("127.0.0.5");
        await running.sendHead({ op: "audio" }, "mkv", sound.length);
        await running.send(sound);
        assert.equal((await running.nextFrame())?.json.type, "accepted");
        await cluster.stopRedis();
        for (let i = 0; i < 3; i++) {
          using refused = await viaHaproxy("127.0.0.6");
          await refused.sendHead({ op: "audio" }, "mkv", sound.length);
          assert.equal((await refused.nextFrame())?.json.code, "UNAVAILABLE");
        }
        assert.equal((await running.nextFrame())?.json.type, "result");
        await cluster.startRedis();
        let done = false;
        for (let i = 0; i < 40 && !done; i++) {
          done = await smallJob("127.0.0.6").then(() => true, async (err) => {
            assert.equal((err as { code?: string }).code, "UNAVAILABLE", String(err));
            await new Promise((resolve) => setTimeout(resolve, 250));
            return false;
          });
        }
        assert.ok(done, "no job accepted after Redis came back");
        // Every node reconnects on its own: each takes a job directly before the next step.
        for (const [i, node] of cluster.nodes.entries()) {
          let accepted = false;
          for (let attempt = 0; attempt < 40 && !accepted; attempt++) {
            accepted = await runJob({
              hostname: "127.0.0.1",
              port: node.port,
              localAddress: `127.0.3.${i + 1}`,
              request: { op: "audio" },
              input: small,
              output: join(dir.path, `node-${i}-${attempt}.mp3`),
              pollMs: 200,
            }).then(() => true, async (err) => {
              assert.equal((err as { code?: string }).code, "UNAVAILABLE", String(err));
              await new Promise((resolve) => setTimeout(resolve, 250));
              return false;
            });
          }
          assert.ok(accepted, `${node.name} took no job after Redis came back`);
        }
      },
    );

    await t.step(
      "kill -9 of a node mid-job: the client fails cleanly, HAProxy marks it down, the lease lapses",
      async () => {
        // Long enough (about 4 s of encoding) that the kill lands mid-job even on a loaded machine.
        const longSound = await makeSound(join(dir.path, "long.mkv"), 900);
        const cli = new Deno.Command(Deno.execPath(), {
          // deno-fmt-ignore
          args: ["run", ...(await buildPermissions()), MAIN, "convert", longSound, "--to", "mp3",
          "--server", `127.0.0.1:${cluster.port}`, "--bind", "127.0.0.7", "--poll", "200ms",
          "--output", join(dir.path, "killed.mp3"), "--quiet",
            // No automatic reconnect: the node's death itself must be a clean connection error.
            "--retries", "0"],
          stdin: "null",
          stdout: "null",
          stderr: "piped",
        }).spawn();
        const stderr = new Response(cli.stderr).text();
        let exited = false;
        cli.status.then(() => exited = true);
        let victim: (typeof cluster.nodes)[number] | undefined;
        const started = await eventually(async () => {
          for (const node of cluster.nodes) {
            // Killed as soon as the node holds the job's files: mid-upload or mid-encode.
            if (
              (await listDir(node.storage)).some((name) => /-(upload\.part|input\.)/.test(name))
            ) {
              victim = node;
            }
          }
          return victim !== undefined || exited;
        }, 30_000);
        assert.ok(started && victim, `the job never started: ${exited ? await stderr : "timeout"}`);
        victim!.child.kill("SIGKILL");
        const { code } = await cli.status;
        assert.equal(code, 3, await stderr);
        const ttl = await lease("127.0.0.7");
        assert.ok(ttl > 0 && ttl <= 2000, `lease TTL ${ttl}`);
        assert.ok(
          await eventually(
            async () => (await cluster.serverStates())[victim!.name] === "DOWN",
            5000,
          ),
          JSON.stringify(await cluster.serverStates()),
        );
        assert.ok(await eventually(async () => (await lease("127.0.0.7")) === -2, 2500));
        assert.ok((await smallJob("127.0.0.7")).size > 0);
        await assert.rejects(
          runJob({
            hostname: "127.0.0.1",
            port: victim!.port,
            request: { op: "audio" },
            input: small,
            output: join(dir.path, "dead.mp3"),
          }),
          ConnectionError,
        );
      },
    );

    await t.step(
      "SIGTERM drains: the agent says drain, the running job completes, a new one is refused",
      async () => {
        const states = await cluster.serverStates();
        const target = cluster.nodes.find((n) => states[n.name] === "UP")!;
        using running = await direct(target.port, "127.0.0.8");
        await running.sendHead({ op: "audio" }, "mkv", sound.length);
        await running.send(sound);
        assert.equal((await running.nextFrame())?.json.type, "accepted");
        target.child.kill("SIGTERM");
        const agent = async () => {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port: target.agentPort });
          return (await new Response(conn.readable).text()).trim();
        };
        assert.ok(await eventually(async () => (await agent()) === "drain", 2000));
        assert.ok(
          await eventually(
            async () => (await cluster.serverStates())[target.name] === "DRAIN",
            2000,
          ),
          JSON.stringify(await cluster.serverStates()),
        );
        using refused = await direct(target.port, "127.0.0.9");
        await refused.sendHead({ op: "audio" }, "mkv", sound.length);
        assert.equal((await refused.nextFrame())?.json.code, "SHUTTING_DOWN");
        assert.equal((await running.nextFrame())?.json.type, "result");
        running.conn.close();
        assert.equal(await target.ended, 0, target.log);
        assert.deepEqual(await listDir(target.storage), []);
      },
    );
  },
});

Deno.test({
  name: "clients beyond every node's maxconn wait in HAProxy's queue, then all finish",
  ignore: missing.length > 0,
  fn: async () => {
    await using dir = await tempDir();
    const sound = await makeSound(join(dir.path, "sound.mkv"), 120);
    // One job per node at a time: the others queue in HAProxy while every agent says "up 1%".
    await using cluster = await startCluster({ nodes: 2, maxconnPerNode: 1, cpus: 1 });
    const stuck = AbortSignal.timeout(60_000);
    const jobs = Array.from({ length: 6 }, (_, i) =>
      runJob({
        hostname: "127.0.0.1",
        port: cluster.port,
        localAddress: `127.0.13.${i + 1}`,
        request: { op: "audio" },
        input: sound,
        output: join(dir.path, `queued-${i}.mp3`),
        pollMs: 200,
        signal: stuck,
      }));
    const results = await Promise.allSettled(jobs);
    assert.ok(!stuck.aborted, "queued clients were never handed on to a node");
    assert.deepEqual(results.map((r) => r.status), Array(6).fill("fulfilled"));
  },
});

Deno.test({
  name: "deploy/haproxy.cfg is a valid HAProxy configuration",
  ignore: missing.length > 0,
  fn: async () => {
    const haproxy = await Deno.stat("/usr/sbin/haproxy").then(
      () => "/usr/sbin/haproxy",
      () => "haproxy",
    );
    const config = fileURLToPath(new URL("../deploy/haproxy.cfg", import.meta.url));
    const { success, stderr } = await new Deno.Command(haproxy, {
      args: ["-c", "-q", "-f", config],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.ok(success, new TextDecoder().decode(stderr));
  },
});
