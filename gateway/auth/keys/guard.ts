/**
 * @module
 * The check every way into a private function (`"access": "key"`) makes first, before a container or
 * an instance is taken and before any metric with a function label is touched: /fn/<name> (CGI and
 * serve), the serve WebSocket upgrade, and /sessions/<name>. A public function passes untouched.
 *
 * No key is 401 KEY_REQUIRED; a wrong, revoked or out-of-scope key is 401 KEY_INVALID and counts as a
 * failure of the client's address (failure-limiter.ts); an address with no tries left is 429
 * AUTH_RATE_LIMITED, key or not. Refusals are counted by route alone (fnix_auth_failures_total,
 * fnix_auth_refused_total), so that refused requests add no series. The key is never logged.
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
  keys: Pick<KeyStore, 'verify'>;
  limiter: FailureLimiter;
  log: Logger;
  metrics: Pick<GatewayMetrics, 'authFailed' | 'authRefused'>;
}

/** Checks that requests to private functions carry a key that opens them. */
export class KeyGuard {
  readonly #options: KeyGuardOptions;

  constructor(options: KeyGuardOptions) {
    this.#options = options;
  }

  /** Returns when the function is public or the request's key opens it; throws KEY_REQUIRED, KEY_INVALID or AUTH_RATE_LIMITED. */
  check(attempt: KeyAttempt): void {
    const { fn, headers, address, route } = attempt;
    if (fn.manifest.access !== 'key') return;
    const { keys, limiter, log, metrics } = this.#options;
    const verdict = limiter.check(address);
    if (!verdict.allowed) {
      metrics.authRefused(route);
      throw new FnixError('AUTH_RATE_LIMITED', `too many wrong invoke keys came from ${clientKey(address)}; try again in ${verdict.retryAfterSeconds} s`, {
        details: { retryAfterSeconds: verdict.retryAfterSeconds },
      });
    }
    const presented = presentedKey(headers, { webSocket: route !== 'invoke' });
    if (!presented) {
      metrics.authFailed(route);
      throw new FnixError(
        'KEY_REQUIRED',
        `function '${fn.name}' is private: send an invoke key as Authorization: Bearer <key> or X-Fnix-Key: <key> (POST /api/keys makes one)`,
        { details: { function: fn.name } },
      );
    }
    const result = keys.verify(presented.text, fn.name);
    if (result.ok) return;
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
      log.warn('too many wrong invoke keys from one client: its requests to private functions are refused for a while', {
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
}
