/**
 * `deno task cluster`: a whole cluster on this machine — Redis, HAProxy and three `mmp serve` nodes
 * on loopback ports with temporary storage — for a demo, the tests and the benchmarks. Ctrl-C
 * stops them all. The production layout is in docs/cluster.md.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));

/** Options of {@linkcode startCluster}. */
export interface ClusterOptions {
  /** Nodes to start. Default 3. */
  nodes?: number;
  /** Seconds a dead node's leases live (`--lease-ttl`). Default 15. */
  leaseTtlSeconds?: number;
  /** `--cpus` of each node. Default: every core. */
  cpus?: number;
  /** HAProxy's `maxconn` per node. Default 64. */
  maxconnPerNode?: number;
  /** Extra `mmp serve` arguments for every node. */
  nodeArgs?: string[];
  /** Address HAProxy listens on. Default 127.0.0.1. */
  hostname?: string;
}

/** One `mmp serve` process of the cluster. */
export interface ClusterNode {
  name: string;
  port: number;
  agentPort: number;
  storage: string;
  child: Deno.ChildProcess;
  /** Everything the node wrote to stderr so far (its job log). */
  readonly log: string;
  /** Resolves with the exit code once the process has ended. */
  ended: Promise<number>;
}

/** A running local cluster. */
export interface Cluster extends AsyncDisposable {
  /** HAProxy's MMP port: what clients connect to. */
  port: number;
  hostname: string;
  redisUrl: string;
  nodes: ClusterNode[];
  /** Stops Redis (its data is lost: it keeps none). */
  stopRedis(): Promise<void>;
  /** Starts Redis again on the same port. */
  startRedis(): Promise<void>;
  /** HAProxy's view of each node by name: `UP`, `DOWN`, `DRAIN` (also an UP node of weight 0), … */
  serverStates(): Promise<Record<string, string>>;
  /** Runs `redis-cli` against the cluster's Redis and returns its output. */
  redisCli(...args: string[]): Promise<string>;
  /** Stops every process and removes the temporary files. */
  stop(): Promise<void>;
}

/** Whether `haproxy` and `redis-server` are installed (what a cluster test needs). */
export async function clusterToolsMissing(): Promise<string[]> {
  const missing: string[] = [];
  for (const tool of ["haproxy", "redis-server", "redis-cli"]) {
    const found = await new Deno.Command("sh", {
      args: ["-c", `command -v ${tool} || test -x /usr/sbin/${tool}`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output().then((out) => out.success, () => false);
    if (!found) missing.push(tool);
  }
  return missing;
}

/** A TCP port that was free a moment ago. */
export function freePort(hostname = "127.0.0.1"): number {
  const listener = Deno.listen({ hostname, port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

function haproxyPath(): string {
  try {
    Deno.statSync("/usr/sbin/haproxy");
    return "/usr/sbin/haproxy";
  } catch {
    return "haproxy";
  }
}

/** Drains a byte stream into text that grows as it arrives. */
function collect(stream: ReadableStream<Uint8Array>): { text: string; done: Promise<void> } {
  const sink = { text: "", done: Promise.resolve() };
  sink.done = stream.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (chunk) => void (sink.text += chunk) }),
  ).catch(() => {});
  return sink;
}

async function waitFor(check: () => boolean | Promise<boolean>, ms: number, what: string) {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`Timed out waiting for ${what}`);
}

async function canConnect(port: number, hostname = "127.0.0.1"): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname, port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** The HAProxy configuration of a local cluster: deploy/haproxy.cfg with loopback addresses. */
export function haproxyConfig(options: {
  hostname: string;
  port: number;
  socket: string;
  maxconn: number;
  nodes: { name: string; port: number; agentPort: number }[];
}): string {
  const servers = options.nodes.map((node) =>
    `  server ${node.name} 127.0.0.1:${node.port} agent-port ${node.agentPort}`
  );
  return `global
  maxconn 4096
  stats socket ${options.socket} mode 600 level admin

defaults
  mode tcp
  timeout connect 2s
  timeout client 6h
  timeout server 6h
  timeout queue 1h
  timeout check 1s

frontend mmp
  bind ${options.hostname}:${options.port}
  default_backend nodes

backend nodes
  balance leastconn
  # weight 100: the agent's "up N%" scales it, and 1 % of the default weight 1 would be 0, a weight
  # HAProxy sends nothing to and, when it rises again, does not hand its queued clients on to.
  default-server check inter 500ms fall 2 rise 1 agent-check agent-inter 500ms send-proxy-v2 check-send-proxy maxconn ${options.maxconn} weight 100
${servers.join("\n")}
`;
}

/**
 * Starts Redis, the nodes, then HAProxy in front of them, and waits until HAProxy sees every node
 * up. Stop it with `await using` or {@linkcode Cluster.stop}.
 *
 * @example
 * ```ts
 * await using cluster = await startCluster({ nodes: 3 });
 * await runJob({ hostname: "127.0.0.1", port: cluster.port, request: { op: "audio" }, input, output });
 * ```
 */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const dir = await Deno.makeTempDir({ prefix: "mmp-cluster-" });
  const hostname = options.hostname ?? "127.0.0.1";
  const redisPort = freePort();
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const children: Deno.ChildProcess[] = [];
  const nodes: ClusterNode[] = [];
  let redis: Deno.ChildProcess | undefined;
  let haproxy: Deno.ChildProcess | undefined;
  const stopChild = async (child: Deno.ChildProcess | undefined, signal: Deno.Signal) => {
    if (!child) return;
    try {
      child.kill(signal);
    } catch { /* ended already */ }
    await child.status;
  };
  const startRedis = async () => {
    redis = new Deno.Command("redis-server", {
      // deno-fmt-ignore
      args: ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", dir],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    await waitFor(() => canConnect(redisPort), 5000, "redis-server");
  };
  const stopRedis = async () => {
    await stopChild(redis, "SIGKILL");
    redis = undefined;
  };
  const stop = async () => {
    await stopChild(haproxy, "SIGKILL");
    await Promise.all(nodes.map(async (node) => {
      await stopChild(node.child, "SIGKILL");
      await node.ended;
    }));
    await stopRedis();
    await Promise.all(children.map((child) => child.status));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await startRedis();
    const count = options.nodes ?? 3;
    for (let i = 1; i <= count; i++) {
      nodes.push(await startNode(`node${i}`, dir, redisUrl, options));
    }
    const port = freePort(hostname);
    const socket = join(dir, "haproxy.sock");
    const config = join(dir, "haproxy.cfg");
    await Deno.writeTextFile(
      config,
      haproxyConfig({
        hostname,
        port,
        socket,
        maxconn: options.maxconnPerNode ?? 64,
        nodes,
      }),
    );
    haproxy = new Deno.Command(haproxyPath(), {
      args: ["-f", config, "-db", "-q"],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const haproxyLog = collect(haproxy.stderr);
    children.push(haproxy);
    const serverStates = async () => parseStates(await haproxyCommand(socket, "show stat"));
    try {
      await waitFor(() => canConnect(port, hostname), 5000, "haproxy");
      // HAProxy may listen before its stats socket exists (CI once read ENOENT there): not yet.
      const allUp = async () => {
        try {
          return Object.values(await serverStates()).every((state) => state === "UP");
        } catch (err) {
          if (err instanceof Deno.errors.NotFound) return false;
          if (err instanceof Deno.errors.ConnectionRefused) return false;
          throw err;
        }
      };
      await waitFor(allUp, 10_000, "every node UP in haproxy");
    } catch (err) {
      throw new Error(`${(err as Error).message}: ${haproxyLog.text}`);
    }
    const cluster: Cluster = {
      port,
      hostname,
      redisUrl,
      nodes,
      stopRedis,
      startRedis,
      serverStates,
      redisCli: async (...args) => {
        const { stdout } = await new Deno.Command("redis-cli", {
          args: ["-p", String(redisPort), ...args],
          stdin: "null",
          stdout: "piped",
          stderr: "null",
        }).output();
        return new TextDecoder().decode(stdout).trim();
      },
      stop,
      [Symbol.asyncDispose]: stop,
    };
    return cluster;
  } catch (err) {
    await stop();
    throw err;
  }
}

async function startNode(
  name: string,
  dir: string,
  redisUrl: string,
  options: ClusterOptions,
): Promise<ClusterNode> {
  const storage = join(dir, name);
  await Deno.mkdir(storage);
  const agentPort = freePort();
  const deno = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const permissions = String(deno.tasks.build).split(" ").filter((arg) =>
    arg.startsWith("--allow-")
  );
  const child = new Deno.Command(Deno.execPath(), {
    // deno-fmt-ignore
    args: ["run", ...permissions, MAIN, "serve", "--host", "127.0.0.1", "--port", "0", "--no-http",
      "--storage", storage, "--redis", redisUrl, "--node-id", name,
      "--lease-ttl", String(options.leaseTtlSeconds ?? 15), "--agent-port", String(agentPort),
      "--proxy-protocol", "127.0.0.1", "--idle-timeout", "30",
      ...(options.cpus ? ["--cpus", String(options.cpus)] : []), ...(options.nodeArgs ?? [])],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const stderr = collect(child.stderr);
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const first = (await lines.read()).value ?? "";
  const drained = (async () => {
    while (!(await lines.read()).done);
  })();
  const ended = Promise.all([child.status, stderr.done, drained]).then(([status]) => status.code);
  const port = Number(/^mmp listening on 127\.0\.0\.1:(\d+)/.exec(first)?.[1]);
  if (!port) {
    try {
      child.kill("SIGKILL");
    } catch { /* ended */ }
    await ended;
    throw new Error(`${name} did not start: ${first} ${stderr.text}`);
  }
  return {
    name,
    port,
    agentPort,
    storage,
    child,
    get log() {
      return stderr.text;
    },
    ended,
  };
}

/** Sends one command to HAProxy's stats socket and returns the answer. */
export async function haproxyCommand(socket: string, command: string): Promise<string> {
  const conn = await Deno.connect({ transport: "unix", path: socket });
  try {
    await conn.write(new TextEncoder().encode(`${command}\n`));
    return await new Response(conn.readable).text();
  } catch {
    return "";
  }
}

/** `show stat` CSV → the state of each server of the `nodes` backend. */
function parseStates(csv: string): Record<string, string> {
  const lines = csv.split("\n");
  const columns = (lines[0] ?? "").replace(/^# /, "").split(",");
  const name = columns.indexOf("svname");
  const status = columns.indexOf("status");
  const weight = columns.indexOf("weight");
  const states: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const fields = line.split(",");
    if (fields[0] !== "nodes" || !fields[name] || fields[name] === "BACKEND") continue;
    // `DRAIN (agent)` → `DRAIN`; a weight of 0 drains as well.
    const state = (fields[status] ?? "").split(" ")[0]!;
    states[fields[name]] = state === "UP" && fields[weight] === "0" ? "DRAIN" : state;
  }
  return states;
}

if (import.meta.main) {
  const cluster = await startCluster();
  console.log(
    `mmp cluster: HAProxy on ${cluster.hostname}:${cluster.port}, Redis ${cluster.redisUrl}`,
  );
  for (const node of cluster.nodes) {
    console.log(`  ${node.name}: MMP 127.0.0.1:${node.port}, agent ${node.agentPort}`);
  }
  console.log(
    `Try: deno run -A main.ts convert FILE --to mp3 --server ${cluster.hostname}:${cluster.port}`,
  );
  console.log("Ctrl-C stops everything.");
  const stopped = Promise.withResolvers<void>();
  Deno.addSignalListener("SIGINT", stopped.resolve);
  Deno.addSignalListener("SIGTERM", stopped.resolve);
  await stopped.promise;
  console.log("stopping the cluster");
  await cluster.stop();
  Deno.exit(0);
}
