/**
 * @module
 * What the gateway answers while it cannot serve functions (Podman or Nix does not work, so the runtime
 * did not start): /healthz says what is wrong, and every other route answers 503 naming the cause,
 * with Retry-After. WebSocket upgrades come through these routes as well (gateway/upgrade.ts
 * writes their answer to the socket). main.ts keeps trying to start the runtime meanwhile, rather than
 * exiting into a crash loop.
 */
import { Hono } from 'hono';
import { nanoid } from 'nanoid';
import type { FnixError } from '../runtime/errors.ts';
import { errorResponse, toFnixError } from './errors.ts';
import { checkHost, type HostAllowlist } from './host-check.ts';
import { INVOCATION_ID_HEADER } from './routes/invoke.ts';

/** The app served while `cause()` stands in the way. */
export function createDegradedApp(cause: () => FnixError, hosts: HostAllowlist): Hono {
  const app = new Hono();
  app.use('*', checkHost(hosts));
  app.onError((error) => errorResponse(toFnixError(error)));
  app.get('/healthz', (c) => c.json({ status: 'unavailable', error: cause().toJSON() }, 503, { 'retry-after': '5' }));
  // Every response of /fn carries an invocation id, this one too.
  app.all('/fn/*', () => errorResponse(cause(), { 'retry-after': '5', [INVOCATION_ID_HEADER]: nanoid() }));
  app.all('*', () => errorResponse(cause(), { 'retry-after': '5' }));
  return app;
}
