import { MmpError } from "../protocol/errors.ts";

/** One client IP's hold on its job slot. */
export interface IpLease {
  readonly ip: string;
  /** Frees the slot; calling it again does nothing. */
  release(): Promise<void>;
}

/**
 * Who holds the one job each client IP may have, across every transport (MMP and HTTP). The
 * in-process {@linkcode LocalIpSlots} serves one server; a shared store (Redis) can serve several.
 */
export interface IpSlots {
  /** Claims `ip`'s slot, or throws `BUSY` when it is taken. */
  claim(ip: string): Promise<IpLease>;
}

/** A client's key for its slot: IPv4 clients of a dual-stack listener show up as `::ffff:a.b.c.d`. */
export function normalizeIp(hostname: string): string {
  return hostname.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, "");
}

/** The error for an IP that already holds its slot. */
export function busyError(): MmpError {
  return new MmpError("BUSY", "A job from your address is already in progress on this server");
}

/**
 * IP slots of this process: a set of the IPs holding one.
 *
 * @example
 * ```ts
 * const slots = new LocalIpSlots();
 * const lease = await slots.claim("192.0.2.7");
 * await slots.claim("192.0.2.7"); // throws BUSY
 * await lease.release();
 * ```
 */
export class LocalIpSlots implements IpSlots {
  readonly #held = new Set<string>();

  /** How many IPs hold a slot now. */
  get size(): number {
    return this.#held.size;
  }

  claim(ip: string): Promise<IpLease> {
    // Checked and taken in one synchronous step: two claims cannot both win.
    if (this.#held.has(ip)) return Promise.reject(busyError());
    this.#held.add(ip);
    let held = true;
    return Promise.resolve({
      ip,
      release: () => {
        if (held) this.#held.delete(ip);
        held = false;
        return Promise.resolve();
      },
    });
  }
}
