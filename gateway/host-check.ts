/**
 * @module
 * The defence against DNS rebinding: fnix answers only requests whose `Host` it knows. A web page on
 * `evil.example` whose name is rebound to 127.0.0.1 is, to the browser, same-origin with the gateway:
 * it could invoke functions and read their answers, or open a shell session, on a gateway that its
 * visitor's machine can reach. Its requests still carry `Host: evil.example`, which is what this checks.
 *
 * Always allowed: IP addresses (rebinding needs a name), `localhost` and names under `.localhost`
 * (browsers resolve those to loopback themselves). Other names must be listed in FNIX_ALLOWED_HOSTS:
 * `fnix.example.com`, `.example.com` for a domain and every name under it, or `*` for any name.
 */
import { isIP } from 'node:net';
import type { MiddlewareHandler } from 'hono';
import { FnixError } from '../runtime/errors.ts';

/** One FNIX_ALLOWED_HOSTS entry: a name, `.domain`, or `*`. */
export const ALLOWED_HOST_PATTERN = /^(\*|\.?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*)$/;

/** Checks the `Host` of requests against the names fnix may be reached by. */
export class HostAllowlist {
  readonly #any: boolean;
  readonly #names: ReadonlySet<string>;
  readonly #domains: readonly string[];

  /** `entries` as FNIX_ALLOWED_HOSTS gives them, already checked against {@link ALLOWED_HOST_PATTERN}. */
  constructor(entries: readonly string[] = []) {
    const lower = entries.map((entry) => entry.toLowerCase());
    this.#any = lower.includes('*');
    this.#names = new Set(lower.filter((entry) => !entry.startsWith('.')));
    this.#domains = lower.filter((entry) => entry.startsWith('.'));
  }

  /** Whether a request with this `Host` header may be served. No header: not a browser, allowed. */
  allows(hostHeader: string | undefined): boolean {
    if (hostHeader === undefined || this.#any) return true;
    const name = hostName(hostHeader);
    if (name === undefined) return false;
    if (isIP(name) !== 0 || name === 'localhost' || name.endsWith('.localhost')) return true;
    return this.#names.has(name) || this.#domains.some((domain) => name.endsWith(domain) || name === domain.slice(1));
  }

  /** Throws HOST_NOT_ALLOWED, naming the host and the setting that allows it, unless {@link allows}. */
  check(hostHeader: string | undefined): void {
    if (this.allows(hostHeader)) return;
    const name = hostName(hostHeader!);
    if (name === undefined || !ALLOWED_HOST_PATTERN.test(name)) {
      throw new FnixError('HOST_NOT_ALLOWED', `the Host header ${JSON.stringify(hostHeader!.slice(0, 100))} is not a host name`, {
        details: { host: hostHeader!.slice(0, 100) },
      });
    }
    throw new FnixError(
      'HOST_NOT_ALLOWED',
      `requests for host ${JSON.stringify(name)} are refused: fnix answers IP addresses, localhost and the names in FNIX_ALLOWED_HOSTS (a defence against DNS rebinding); to serve this name, start fnix with FNIX_ALLOWED_HOSTS=${name}`,
      { details: { host: name } },
    );
  }
}

/** Hono middleware: every request's Host is checked before its route (the error handler answers). */
export function checkHost(hosts: HostAllowlist): MiddlewareHandler {
  // Not async (nor the app's other pass-through middleware): each async layer is a promise per request.
  return function checkHost(c, next) {
    // Node's parsed headers when there are some (HTTP and upgrades alike): c.req.header would make a
    // fetch Headers of every request just for this one.
    const incoming = (c.env as { incoming?: { headers: Record<string, unknown> } } | undefined)?.incoming;
    hosts.check(incoming ? (incoming.headers['host'] as string | undefined) : c.req.header('host'));
    return next();
  };
}

/** The name part of a Host header (`name`, `name:port`, `[v6]:port`), lower case, without a final dot. */
function hostName(header: string): string | undefined {
  const value = header.trim().toLowerCase();
  const bracketed = /^\[([0-9a-f:.]+)\](:\d+)?$/.exec(value);
  if (bracketed) return bracketed[1];
  const plain = /^([^:[\]\s/@]+)(:\d+)?$/.exec(value);
  return plain ? plain[1]!.replace(/\.$/, '') : undefined;
}
