/**
 * @module
 * `GET /metrics`: the gateway's metrics in Prometheus text format. With FNIX_METRICS_TOKEN set, only
 * for `Authorization: Bearer <that token>` (compared in constant time, wrong ones limited per client
 * address as the deploy token's are); unset, open to anyone who reaches the gateway.
 */
import type { HttpBindings } from '@hono/node-server';
import type { Context } from 'hono';
import type { TokenGuard } from '../auth/guard.ts';
import type { GatewayMetrics } from '../metrics/metrics.ts';

/** Creates the /metrics handler; with `token`, a request must carry it. */
export function createMetricsHandler(metrics: GatewayMetrics, token?: TokenGuard) {
  return async function metricsText(c: Context<{ Bindings: HttpBindings }>): Promise<Response> {
    token?.bearer({ route: 'metrics', authorization: c.req.header('authorization'), address: c.env.incoming.socket.remoteAddress ?? '' });
    const { body, contentType } = await metrics.render();
    return c.body(body, 200, { 'content-type': contentType });
  };
}
