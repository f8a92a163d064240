/**
 * Benchmark rows of the cluster and the CPU budget (issue 13), run by `bench/run.ts`: fan-in through
 * HAProxy, HAProxy's cost on a big upload, MP3 throughput against `xargs -P`, and how busy a mixed
 * stream keeps the CPU.
 */
import { join } from "node:path";
import { runJob } from "../src/client/client.ts";
import { encodeFrameHead } from "../src/protocol/frame.ts";
import { FrameReader } from "../src/protocol/frame_reader.ts";
import { writeAll } from "../src/protocol/frame_writer.ts";
import { V2_SIGNATURE } from "../src/cluster/proxy_protocol.ts";
import { clusterToolsMissing, startCluster } from "../deploy/cluster.ts";
import { ffmpeg } from "./_common.ts";

/** Adds one row: figure, measured, baseline, target. */
export type AddRow = (name: string, value: string, baseline: string, target: string) => void;

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** A v2 PROXY header for 127.0.0.1 → what HAProxy sends. */
function proxyHeader(): Uint8Array {
  const body = [127, 0, 0, 1, 127, 0, 0, 1, 0x9c, 0x40, 0x23, 0x28];
  return new Uint8Array([...V2_SIGNATURE, 0x21, 0x11, 0, body.length, ...body]);
}

/**
 * Sends `path` as an upload and waits for `accepted`; returns the seconds the accepted upload took.
 * The previous upload from this IP was cut after `accepted`, and its node frees the IP's lease a
 * moment later: a `BUSY` until then is waited out (at most 10 s), not measured.
 */
async function upload(port: number, path: string, size: number, prefix?: Uint8Array) {
  for (let attempt = 0;; attempt++) {
    try {
      return await uploadOnce(port, path, size, prefix);
    } catch (err) {
      // An early BUSY may reach us as the answer, or as a reset while the payload still flows.
      const busy = String(err).includes('"BUSY"') || err instanceof Deno.errors.BrokenPipe ||
        err instanceof Deno.errors.ConnectionReset;
      if (!busy || attempt >= 40) throw err;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

async function uploadOnce(port: number, path: string, size: number, prefix?: Uint8Array) {
  const started = performance.now();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const head = encodeFrameHead({ op: "audio" }, "mp4", size);
    await writeAll(conn, prefix ? new Uint8Array([...prefix, ...head]) : head);
    using file = await Deno.open(path);
    const buf = new Uint8Array(1 << 20);
    for (let n = await file.read(buf); n !== null; n = await file.read(buf)) {
      await writeAll(conn, buf.subarray(0, n));
    }
    const reply = await new FrameReader(conn).readFrameHead();
    if (reply?.json.type !== "accepted") throw new Error(`refused: ${JSON.stringify(reply?.json)}`);
  } finally {
    conn.close();
  }
  return (performance.now() - started) / 1000;
}

/** Rows 8 and 9: 100 IPs through HAProxy to 3 nodes, and HAProxy's cost on a big upload. */
export async function clusterRows(
  dir: string,
  quick: boolean,
  bigFile: (bytes: number) => Promise<string>,
  add: AddRow,
): Promise<void> {
  const missing = await clusterToolsMissing();
  if (missing.length > 0) {
    add("8–9. cluster", "skipped", `${missing.join(", ")} not installed`, "—");
    return;
  }
  await using cluster = await startCluster({ nodes: 3, maxconnPerNode: 16 });
  const small = join(dir, "cluster-small.mkv");
  await ffmpeg(["-f", "lavfi", "-i", "sine=duration=5", "-c:a", "flac", small]);
  const fanIn = quick ? 10 : 100;
  const started = performance.now();
  const results = await Promise.allSettled(Array.from({ length: fanIn }, async (_, i) => {
    const begun = performance.now();
    await runJob({
      hostname: "127.0.0.1",
      port: cluster.port,
      localAddress: `127.0.8.${i + 1}`,
      request: { op: "audio" },
      input: small,
      output: join(dir, `cluster-${i}.mp3`),
      pollMs: 1000,
    });
    return (performance.now() - begun) / 1000;
  }));
  const wall = (performance.now() - started) / 1000;
  const times = results.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
  const perNode = cluster.nodes.map((node) => (node.log.match(/ audio .* ok$/gm) ?? []).length);
  add(
    `8. cluster fan-in: ${fanIn} IPs through HAProxy to 3 nodes (MP3 jobs)`,
    `${times.length}/${fanIn} succeeded in ${wall.toFixed(1)} s`,
    `p50 ${percentile(times, 50).toFixed(2)} s, p99 ${
      percentile(times, 99).toFixed(2)
    } s; jobs per node ${perNode.join("/")}`,
    "all succeed",
  );

  const size = quick ? 64 * 2 ** 20 : 2 ** 30;
  const file = await bigFile(size);
  const node = cluster.nodes[0]!;
  let direct = Infinity, proxied = Infinity;
  for (let round = 0; round < 3; round++) {
    await new Deno.Command("sync").output();
    direct = Math.min(direct, await upload(node.port, file, size, proxyHeader()));
    await new Deno.Command("sync").output();
    proxied = Math.min(proxied, await upload(cluster.port, file, size));
  }
  await Deno.remove(file);
  add(
    `9. upload ${(size / 2 ** 30).toFixed(2)} GiB until accepted, through HAProxy`,
    `${(size / proxied / 1e6).toFixed(0)} MB/s`,
    `straight to a node ${(size / direct / 1e6).toFixed(0)} MB/s → ratio **${
      (direct / proxied).toFixed(2)
    }**`,
    "≥ 0.8",
  );
}

/** `/proc/stat`'s busy and total jiffies over every CPU. */
function cpuJiffiesSync(): { busy: number; total: number } {
  const line = Deno.readTextFileSync("/proc/stat").split("\n")[0]!;
  const values = line.split(/\s+/).slice(1, 9).map(Number);
  const total = values.reduce((a, b) => a + b, 0);
  const idle = values[3]! + values[4]!;
  return { busy: total - idle, total };
}

/** Seconds `xargs -P cores` takes to run `count` MP3 extractions (each after an ffprobe). */
async function xargsRun(dir: string, count: number, cores: number, sound: string, probe: boolean) {
  const outputs = join(dir, "xargs");
  await Deno.mkdir(outputs);
  const ffprobe = `ffprobe -v error -show_format -show_streams -of json "$1" >/dev/null && `;
  const started = performance.now();
  const { success } = await new Deno.Command("sh", {
    args: [
      "-c",
      `seq ${count} | xargs -P ${cores} -I N sh -c '${probe ? ffprobe : ""}` +
      `ffmpeg -nostdin -loglevel error -y -i "$1" -map 0:0 -c:a libmp3lame -q:a 2 -threads 1 ` +
      `"$2/N.mp3"' sh "$1" "$2"`,
      "sh",
      sound,
      outputs,
    ],
    stdin: "null",
  }).output();
  if (!success) throw new Error("xargs ffmpeg failed");
  const seconds = (performance.now() - started) / 1000;
  await Deno.remove(outputs, { recursive: true });
  return seconds;
}

/** Rows 10 and 11: the CPU budget against `xargs -P <cores>`, and a mixed stream's CPU use. */
export async function budgetRows(
  dir: string,
  quick: boolean,
  port: number,
  add: AddRow,
): Promise<void> {
  const cores = navigator.hardwareConcurrency;
  const count = quick ? 10 : 100;
  const sound = join(dir, "budget.mkv");
  await ffmpeg(["-f", "lavfi", "-i", `sine=duration=${quick ? 10 : 60}`, "-c:a", "flac", sound]);
  const xargsSeconds = await xargsRun(dir, count, cores, sound, false);
  // mmp reads every upload with ffprobe before it plans the job; on Debian's ffmpeg a process
  // start costs ~0.15 s of loading, as much as this whole MP3 encode. The second baseline pays it.
  const probedSeconds = await xargsRun(dir, count, cores, sound, true);
  const mmpStarted = performance.now();
  await Promise.all(Array.from({ length: count }, (_, i) =>
    runJob({
      hostname: "127.0.0.1",
      port,
      localAddress: `127.0.9.${i + 1}`,
      request: { op: "audio" },
      input: sound,
      output: join(dir, `budget-${i}.mp3`),
      pollMs: 1000,
    })));
  const mmpSeconds = (performance.now() - mmpStarted) / 1000;
  add(
    `10. ${count} MP3 jobs from ${count} IPs, CPU budget ${cores} threads`,
    `${(count / mmpSeconds).toFixed(2)} jobs/s`,
    `the same ffmpeg commands with \`xargs -P ${cores}\`: ${
      (count / xargsSeconds).toFixed(2)
    } jobs/s → ratio **${(xargsSeconds / mmpSeconds).toFixed(2)}**; with an ffprobe of the ` +
      `input before each: ${(count / probedSeconds).toFixed(2)} jobs/s → ratio **${
        (probedSeconds / mmpSeconds).toFixed(2)
      }**`,
    "≥ 0.9",
  );

  // A mixed stream: a job arrives every 0.5 s, one in four a compress, faster than they finish.
  // The clients poll every 0.1 s, so the bench knows which jobs wait in the queue; the CPU counts
  // while at least one does (the target), and from the first request until the queue empties.
  const movie = join(dir, "budget-movie.mp4");
  // deno-fmt-ignore
  await ffmpeg(["-f", "lavfi", "-i", `testsrc2=size=640x360:duration=${quick ? 4 : 15}`,
    "-c:v", "libx264", "-preset", "ultrafast", movie]);
  const mixed = quick ? 6 : 24;
  const waiting = new Set<number>();
  const meter = new QueueCpuMeter(() => waiting.size > 0);
  await Promise.all(Array.from({ length: mixed }, async (_, i) => {
    await new Promise((resolve) => setTimeout(resolve, i * 500));
    const compress = i % 4 === 3;
    await runJob({
      hostname: "127.0.0.1",
      port,
      localAddress: `127.0.12.${i + 1}`,
      request: compress ? { op: "compress" } : { op: "audio" },
      input: compress ? movie : sound,
      output: join(dir, `mixed-${i}.${compress ? "mp4" : "mp3"}`),
      pollMs: 100,
      force: true,
      onEvent: (event) => {
        const queued = (event.stage === "accepted" && event.queuePosition > 0) ||
          (event.stage === "status" && event.state === "queued");
        if (queued) waiting.add(i);
        else if (event.stage === "accepted" || event.stage === "status") waiting.delete(i);
      },
    });
    waiting.delete(i);
  }));
  const { whileWaiting, waitedSeconds, overall, seconds } = meter.stop();
  add(
    `11. CPU busy while a mixed stream (${mixed} jobs, one every 0.5 s, 1 in 4 a compress) is queued`,
    `**${whileWaiting.toFixed(0)} %**`,
    `/proc/stat every 0.1 s, all cores, during the ${waitedSeconds.toFixed(1)} s in which a job ` +
      `waited; ${overall.toFixed(0)} % over the whole ${seconds.toFixed(1)} s stream`,
    "≥ 90 %",
  );
}

/**
 * Samples `/proc/stat` every 0.1 s until stopped: the CPU's busy share over the intervals that
 * began while `queued()` held, and over all of them.
 */
class QueueCpuMeter {
  #timer: ReturnType<typeof setInterval>;
  #queued = { busy: 0, total: 0 };
  #all = { busy: 0, total: 0 };
  #last = cpuJiffiesSync();

  constructor(queued: () => boolean) {
    let waitingNow = queued();
    this.#timer = setInterval(() => {
      const now = cpuJiffiesSync();
      const delta = { busy: now.busy - this.#last.busy, total: now.total - this.#last.total };
      for (const sum of waitingNow ? [this.#queued, this.#all] : [this.#all]) {
        sum.busy += delta.busy;
        sum.total += delta.total;
      }
      this.#last = now;
      waitingNow = queued();
    }, 100);
  }

  stop() {
    clearInterval(this.#timer);
    const share = ({ busy, total }: { busy: number; total: number }) =>
      total > 0 ? (100 * busy) / total : NaN;
    const seconds = (sum: { total: number }) => sum.total / 100 / navigator.hardwareConcurrency;
    return {
      whileWaiting: share(this.#queued),
      waitedSeconds: seconds(this.#queued),
      overall: share(this.#all),
      seconds: seconds(this.#all),
    };
  }
}
