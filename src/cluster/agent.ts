/**
 * HAProxy's agent check: each TCP connection to the agent port gets one line with this node's
 * state, and the balancer adjusts the node's weight (`up ready 60%`) or stops sending it new
 * clients (`drain`).
 *
 * @module
 */
import { writeAll } from "../protocol/frame_writer.ts";

/** Options of {@linkcode startAgent}. */
export interface AgentOptions {
  /** Address to listen on. */
  hostname: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** The line to send, without its newline: see {@linkcode agentLine}. */
  report: () => string;
}

/** A running agent-check responder. */
export interface Agent extends AsyncDisposable {
  readonly addr: Deno.NetAddr;
  close(): Promise<void>;
}

/** What a node reports, from which {@linkcode agentLine} makes the agent's answer. */
export interface NodeState {
  /** The node is draining or stopping. */
  stopping: boolean;
  /** The CPU budget in threads, and the threads running and waiting jobs need. */
  cpus: number;
  usedThreads: number;
  waitingThreads: number;
  /** Quota bytes reserved, and the quota. */
  reservedBytes: number;
  maxBytes: number;
}

/** Above this share of the quota in use, the node asks for no new clients. */
export const STORAGE_DRAIN_SHARE = 0.9;

/**
 * The agent's answer: `drain` when stopping or the quota is nearly full, else `up ready N%` with N
 * the free share of the CPU budget (at least 1, so a busy node stays eligible and its clients
 * queue rather than fail). `ready` lifts a drain this agent set earlier (after a restart).
 */
export function agentLine(state: NodeState): string {
  if (state.stopping) return "drain";
  if (state.reservedBytes >= STORAGE_DRAIN_SHARE * state.maxBytes) return "drain";
  const free = state.cpus - state.usedThreads - state.waitingThreads;
  const percent = Math.min(100, Math.max(1, Math.round((100 * free) / state.cpus)));
  return `up ready ${percent}%`;
}

/**
 * Listens for agent checks; each connection gets `report()` and a newline, then is closed.
 *
 * @example
 * ```ts
 * await using agent = startAgent({ hostname: "0.0.0.0", port: 9001, report: () => "up ready 100%" });
 * ```
 */
export function startAgent(options: AgentOptions): Agent {
  const listener = Deno.listen({ hostname: options.hostname, port: options.port });
  const answers = new Set<Promise<void>>();
  let closed = false;
  const loop = (async () => {
    while (!closed) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch {
        continue; // closed (the loop ends) or a checker that left before accept
      }
      const answer = (async () => {
        try {
          await writeAll(conn, new TextEncoder().encode(`${options.report()}\n`));
        } catch { /* the checker left */ }
        try {
          conn.close();
        } catch { /* closed already */ }
      })();
      answers.add(answer);
      answer.finally(() => answers.delete(answer));
    }
  })();
  const close = async () => {
    if (!closed) {
      closed = true;
      listener.close();
    }
    await loop;
    await Promise.all(answers);
  };
  return { addr: listener.addr, close, [Symbol.asyncDispose]: close };
}
