import { HttpError } from "./errors.ts";

/** Headers on every answer: the page runs only its own files, nothing is sniffed or framed. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; " +
    "img-src 'self' blob:; media-src 'self' blob:; connect-src 'self'; form-action 'self'; " +
    "base-uri 'none'; frame-ancestors 'none'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "Cross-Origin-Resource-Policy": "same-origin",
};

/** The host name of a `Host` header (`Example.com:8080` → `example.com`, `[::1]:80` → `::1`). */
export function hostName(host: string): string | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:\[\]/@]+))(?::(\d{1,5}))?$/.exec(host.trim());
  const name = match?.[1] ?? match?.[2];
  return name?.toLowerCase().replace(/\.$/, "");
}

/** Whether a host name is an IP address literal (`192.0.2.7`, `::1`). */
function isIpLiteral(name: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(name) || name.includes(":");
}

function port(host: string, protocol: string): string {
  const explicit = /:(\d{1,5})$/.exec(host)?.[1];
  return explicit ?? (protocol === "https:" ? "443" : "80");
}

/**
 * Same-origin rules: `Host` must be a name this server answers to (no DNS rebinding), and a
 * state-changing request that carries an `Origin` must come from this server's own page.
 */
export class HostGuard {
  readonly #any: boolean;
  readonly #ipLiterals: boolean;
  readonly #allowed: ReadonlySet<string>;

  /**
   * `allowed`: the host names to answer to (`*`: any). Without it: `bind`, `localhost` and any IP
   * address, which covers 127.0.0.1, ::1 and all of this machine's addresses. A DNS-rebinding
   * attack always carries the attacker's own domain name in `Host`, never an IP address.
   */
  constructor(allowed: readonly string[] | undefined, bind: string) {
    const names = allowed ?? [bind, "localhost"];
    this.#any = names.includes("*");
    this.#ipLiterals = allowed === undefined;
    this.#allowed = new Set(names.map((name) => hostName(name) ?? name.toLowerCase()));
  }

  /** Throws 421 when the `Host` header names a host this server does not answer to. */
  checkHost(request: Request): void {
    const host = request.headers.get("host");
    const name = host === null ? undefined : hostName(host);
    if (
      name !== undefined &&
      (this.#any || this.#allowed.has(name) || (this.#ipLiterals && isIpLiteral(name)))
    ) return;
    throw new HttpError(
      421,
      "BAD_REQUEST",
      `This server does not answer to the host name ${JSON.stringify(host?.slice(0, 100) ?? "")}`,
      {
        solution:
          "Use the server's own address, or ask the operator to add the name to --http-allowed-hosts",
      },
    );
  }

  /** Throws 403 when a request carries an `Origin` other than this server's. */
  checkOrigin(request: Request): void {
    const origin = request.headers.get("origin");
    if (origin === null) return;
    const host = request.headers.get("host") ?? "";
    let url: URL | undefined;
    try {
      url = new URL(origin);
    } catch { /* "null" and other opaque origins */ }
    if (
      url && (url.protocol === "http:" || url.protocol === "https:") &&
      url.hostname.replace(/^\[|\]$/g, "").toLowerCase() === hostName(host) &&
      port(url.host, url.protocol) === port(host, url.protocol)
    ) return;
    throw new HttpError(403, "BAD_REQUEST", "Requests from other web sites are refused", {
      solution: "Use the page this server serves, or a client that sends no Origin header",
    });
  }
}
