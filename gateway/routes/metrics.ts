/**
 * @module
 * `GET /metrics`: the gateway's metrics in Prometheus text format.
 */
import type { Context } from 'hono';
import type { GatewayMetrics } from '../metrics/metrics.ts';

/** Creates the /metrics handler. */
export function createMetricsHandler(metrics: GatewayMetrics) {
  return async function metricsText(c: Context): Promise<Response> {
    const { body, contentType } = await metrics.render();
    return c.body(body, 200, { 'content-type': contentType });
  };
}
