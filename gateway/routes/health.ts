/**
 * @module
 * `GET /healthz`: Podman, Nix, the package set, the pool and the functions. 200 while serving, 503 once
 * shutdown has begun.
 */
import type { Context } from 'hono';
import type { FunctionRegistry } from '../../runtime/functions/registry.ts';
import type { RuntimeHealth } from '../../runtime/runtime.ts';

/** What the route needs. */
export interface HealthRouteOptions {
  health: () => RuntimeHealth;
  registry: FunctionRegistry;
  /** True once the gateway is shutting down. */
  isShuttingDown: () => boolean;
}

/** Creates the /healthz handler. */
export function createHealthHandler(options: HealthRouteOptions) {
  return function healthz(c: Context): Response {
    const shuttingDown = options.isShuttingDown();
    const health = options.health();
    return c.json(
      {
        status: shuttingDown ? 'shutting-down' : 'ok',
        podman: health.podman,
        nix: health.nix,
        packageSet: health.packageSet,
        pool: health.pool,
        functions: options.registry.list(),
      },
      shuttingDown ? 503 : 200,
    );
  };
}
