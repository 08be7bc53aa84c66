/**
 * @module
 * `GET /healthz`: Podman, Nix, the package set, the pool and the functions (a serve function's with its
 * instances). 200 while serving, 503 once shutdown has begun.
 */
import type { Context } from 'hono';
import type { Cluster } from '../../cluster/cluster.ts';
import type { FunctionRegistry } from '../../runtime/functions/registry.ts';
import type { RuntimeHealth } from '../../runtime/runtime.ts';
import type { ServeInstances } from '../../runtime/serve/instances.ts';

/** What the route needs. */
export interface HealthRouteOptions {
  health: () => RuntimeHealth;
  registry: FunctionRegistry;
  /** Serve functions' instances: each serve function's entry lists them. */
  instances: Pick<ServeInstances, 'list'>;
  /** True once the gateway is shutting down. */
  isShuttingDown: () => boolean;
  /** A cluster node's state: 503 until it serves the live deployment (and while stale, if so configured). @default none */
  cluster?: Pick<Cluster, 'health' | 'unhealthy'> | undefined;
}

/** Creates the /healthz handler. */
export function createHealthHandler(options: HealthRouteOptions) {
  return function healthz(c: Context): Response {
    const shuttingDown = options.isShuttingDown();
    const health = options.health();
    const unhealthy = options.cluster?.unhealthy();
    const cluster = options.cluster?.health();
    return c.json(
      {
        status: shuttingDown ? 'shutting-down' : unhealthy ? (cluster?.synced ? 'stale' : 'syncing') : 'ok',
        ...(unhealthy ? { reason: unhealthy } : {}),
        ...(cluster ? { cluster } : {}),
        podman: health.podman,
        nix: health.nix,
        packageSet: health.packageSet,
        pool: health.pool,
        functions: options.registry
          .list()
          .map((entry) => (entry.status === 'ready' && entry.serve ? { ...entry, instances: options.instances.list(entry.name) } : entry)),
      },
      shuttingDown || unhealthy ? 503 : 200,
    );
  };
}
