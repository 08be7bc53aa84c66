/**
 * @module
 * The check every way into a private function (`"access": "key"`) makes first, before a container or
 * an instance is taken and before any metric with a function label is touched: /fn/<name> (CGI and
 * serve), the serve WebSocket upgrade, and /sessions/<name>. A public function passes untouched.
 *
 * No key is 401 KEY_REQUIRED; a wrong, revoked or out-of-scope key is 401 KEY_INVALID and counts as a
 * failure of the client's address (failure-limiter.ts), or is 429 AUTH_RATE_LIMITED once the address
 * has no tries left. The key is verified first: a key that opens the function always passes, whatever
 * its address sent before (a 256-bit key is not guessed, and a guesser must not lock out its
 * neighbours). Refusals are counted by route alone (fnix_auth_failures_total, fnix_auth_refused_total),
 * so that refused requests add no series. The key is never logged.
 *
 * What a key opened and what lasts (a session, a serve WebSocket) is held against the key
 * ({@link KeyGuard.hold}), and ended when the key is revoked.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { FnixError } from '../../../runtime/errors.ts';
import type { Manifest } from '../../../runtime/functions/manifest.ts';
import type { Logger } from '../../../runtime/log.ts';
import type { GatewayMetrics } from '../../metrics/metrics.ts';
import { clientKey, type FailureLimiter } from '../failure-limiter.ts';
import { presentedKey } from './key-text.ts';
import type { KeyStore } from './store.ts';

/** One request to a function, as the check sees it. */
export interface KeyAttempt {
  /** The function asked for. */
  fn: { name: string; manifest: Pick<Manifest, 'access'> };
  /** The request's headers (an upgrade request's, for a WebSocket). */
  headers: IncomingHttpHeaders;
  /** The client's address (the socket's peer). */
  address: string;
  /** Which way it came, for the metrics and the log. */
  route: 'invoke' | 'session' | 'websocket';
}

/** What the guard needs. */
export interface KeyGuardOptions {
  keys: Pick<KeyStore, 'verify' | 'onChange'>;
  limiter: FailureLimiter;
  log: Logger;
  metrics: Pick<GatewayMetrics, 'authFailed' | 'authRefused'>;
}

/** Checks that requests to private functions carry a key that opens them, and ends what a key opened when it is revoked. */
export class KeyGuard {
  readonly #options: KeyGuardOptions;
  /** What each key holds open: the calls that end it. */
  readonly #held = new Map<string, Set<() => void>>();

  constructor(options: KeyGuardOptions) {
    this.#options = options;
    options.keys.onChange((change) => {
      if (change.type === 'revoked') this.#revoked(change.key.id);
    });
  }

  /**
   * Returns when the function is public (undefined) or the request's key opens it (the key's id);
   * throws KEY_REQUIRED, KEY_INVALID or AUTH_RATE_LIMITED.
   */
  check(attempt: KeyAttempt): string | undefined {
    const { fn, headers, address, route } = attempt;
    if (fn.manifest.access !== 'key') return undefined;
    const { keys, limiter, log, metrics } = this.#options;
    const presented = presentedKey(headers, { webSocket: route !== 'invoke' });
    if (!presented) {
      metrics.authFailed(route);
      throw new FnixError(
        'KEY_REQUIRED',
        `function '${fn.name}' is private: send an invoke key as Authorization: Bearer <key> or X-Fnix-Key: <key> (POST /api/keys makes one)`,
        { details: { function: fn.name } },
      );
    }
    // The key first: a right one passes whatever its address did, and only failures meet the limit.
    const result = keys.verify(presented.text, fn.name);
    if (result.ok) return result.key.id;
    const verdict = limiter.check(address);
    if (!verdict.allowed) {
      metrics.authRefused(route);
      throw new FnixError('AUTH_RATE_LIMITED', `too many wrong invoke keys came from ${clientKey(address)}; try again in ${verdict.retryAfterSeconds} s`, {
        details: { retryAfterSeconds: verdict.retryAfterSeconds },
      });
    }
    limiter.fail(address);
    metrics.authFailed(route);
    // The key's id only when it names a real key: the rest of what was sent stays out of the log.
    log.warn('a request came with a wrong invoke key', {
      function: fn.name,
      route,
      address,
      via: presented.via,
      ...(result.keyId ? { keyId: result.keyId, why: 'scope' } : {}),
    });
    const after = limiter.check(address);
    if (!after.allowed) {
      log.warn('too many wrong invoke keys from one client: its wrong keys are refused with 429 for a while', {
        route,
        client: clientKey(address),
        seconds: after.retryAfterSeconds,
      });
    }
    const message =
      result.why === 'scope'
        ? `the invoke key ${result.keyId} opens another function, not '${fn.name}': use a key made for '${fn.name}' or for every function`
        : `the invoke key is wrong or was revoked: send a current key for '${fn.name}' (GET /api/keys lists them, POST /api/keys makes one)`;
    throw new FnixError('KEY_INVALID', message, { details: { function: fn.name } });
  }

  /**
   * Calls `end` (once) when key `keyId` is revoked: what the key opened and still lasts (a session, a
   * serve WebSocket) holds it so. Returns what lets go of it, to call when that ends by itself.
   */
  hold(keyId: string, end: () => void): () => void {
    const ends = this.#held.get(keyId) ?? new Set<() => void>();
    this.#held.set(keyId, ends);
    const entry = () => end();
    ends.add(entry);
    return () => {
      const now = this.#held.get(keyId);
      if (!now?.delete(entry)) return;
      if (now.size === 0) this.#held.delete(keyId);
    };
  }

  /** How many things key `keyId` holds open (tests look). */
  holding(keyId: string): number {
    return this.#held.get(keyId)?.size ?? 0;
  }

  #revoked(keyId: string): void {
    const ends = this.#held.get(keyId);
    if (!ends) return;
    this.#held.delete(keyId);
    for (const end of ends) {
      try {
        end();
      } catch (error) {
        this.#options.log.error('could not end what a revoked invoke key had opened', { keyId, error: String(error) });
      }
    }
  }
}

/** The error that ends what a revoked key had opened. */
export function revokedKeyError(fnName: string, keyId: string): FnixError {
  return new FnixError('KEY_INVALID', `the invoke key ${keyId} was revoked: open it again with a current key for '${fnName}'`, {
    details: { function: fnName },
  });
}
