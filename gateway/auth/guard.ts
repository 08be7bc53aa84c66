/**
 * @module
 * The deploy token as /git and /api check it (and FNIX_METRICS_TOKEN as /metrics does, with a guard
 * of its own): the token itself (token.ts), and the failed attempts of
 * each client address, limited (failure-limiter.ts), logged without the guess, and counted. A request
 * with no credentials at all is not a failure: git asks without them first, and sends them once
 * challenged.
 */
import { FnixError } from '../../runtime/errors.ts';
import type { Logger } from '../../runtime/log.ts';
import type { GatewayMetrics } from '../metrics/metrics.ts';
import { clientKey, type FailureLimiter } from './failure-limiter.ts';
import type { TokenCheck } from './token.ts';

/** One request's attempt at the token. */
export interface TokenAttempt {
  /** Where it came to, for the log and the metrics. */
  route: 'git' | 'api' | 'metrics';
  /** The `Authorization` header, as sent. */
  authorization: string | undefined;
  /** The client's address (the socket's peer). */
  address: string;
}

/** Checks token attempts, limiting each address's failures. */
export class TokenGuard {
  readonly #token: TokenCheck;
  readonly #limiter: FailureLimiter;
  readonly #log: Logger;
  readonly #metrics: GatewayMetrics;

  constructor(options: { token: TokenCheck; limiter: FailureLimiter; log: Logger; metrics: GatewayMetrics }) {
    this.#token = options.token;
    this.#limiter = options.limiter;
    this.#log = options.log;
    this.#metrics = options.metrics;
  }

  /** HTTP Basic, the token as the password (git). Throws UNAUTHORIZED or AUTH_RATE_LIMITED. */
  basic(attempt: TokenAttempt): void {
    this.#check(attempt, () => this.#token.basic(attempt.authorization));
  }

  /** `Authorization: Bearer <token>` (the admin API). Throws UNAUTHORIZED or AUTH_RATE_LIMITED. */
  bearer(attempt: TokenAttempt): void {
    this.#check(attempt, () => this.#token.bearer(attempt.authorization));
  }

  #check(attempt: TokenAttempt, verify: () => void): void {
    const { route, address } = attempt;
    const verdict = this.#limiter.check(address);
    if (!verdict.allowed) {
      this.#metrics.authRefused(route);
      throw new FnixError('AUTH_RATE_LIMITED', `too many wrong tokens came from ${clientKey(address)}; try again in ${verdict.retryAfterSeconds} s`, {
        details: { retryAfterSeconds: verdict.retryAfterSeconds },
      });
    }
    try {
      verify();
    } catch (error) {
      if (attempt.authorization) {
        this.#limiter.fail(address);
        this.#metrics.authFailed(route);
        this.#log.warn('a request came with a wrong token', { route, address });
        const after = this.#limiter.check(address);
        if (!after.allowed) {
          this.#log.warn('too many wrong tokens from one client: its requests are refused for a while', {
            route,
            client: clientKey(address),
            seconds: after.retryAfterSeconds,
          });
        }
      }
      throw error;
    }
  }
}
