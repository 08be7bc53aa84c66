/**
 * @module
 * The Hono app: routes wired to the runtime they close over, and the error handler that turns every
 * error into the JSON error shape (gateway/errors.ts). WebSocket upgrades come through it too
 * (gateway/upgrade.ts), and meet the same middleware, routes and error handler.
 */
import { Hono } from 'hono';
import { nanoid } from 'nanoid';
import { FnixError } from '../runtime/errors.ts';
import type { FunctionRegistry } from '../runtime/functions/registry.ts';
import type { Logger } from '../runtime/log.ts';
import type { Runner } from '../runtime/runner.ts';
import type { ServeInstances } from '../runtime/serve/instances.ts';
import type { RuntimeHealth } from '../runtime/runtime.ts';
import { errorResponse, toFnixError } from './errors.ts';
import { checkHost, type HostAllowlist } from './host-check.ts';
import { instrumentRunner } from './metrics/instrument-runner.ts';
import type { GatewayMetrics } from './metrics/metrics.ts';
import type { Deployments } from '../deployments/deployments.ts';
import type { TokenGuard } from './auth/guard.ts';
import type { KeyGuard } from './auth/keys/guard.ts';
import type { KeyStore } from './auth/keys/store.ts';
import { createGitHandler, GIT_PATH } from './git/http-backend.ts';
import type { Cluster } from '../cluster/cluster.ts';
import { createAdminApi } from './routes/admin.ts';
import { createClusterRoutes } from './routes/cluster.ts';
import { createHealthHandler } from './routes/health.ts';
import { createLogsApi } from './routes/logs.ts';
import type { Recorder } from '../runtime/records/recorder.ts';
import { createKeysApi } from './routes/keys.ts';
import { createSecretsApi, type SecretsApiOptions } from './routes/secrets.ts';
import { createServeProxy } from './proxy/http.ts';
import { createServeUpgrade } from './proxy/upgrade.ts';
import { createInvokeHandler, INVOCATION_ID_HEADER, type GatewayEnv } from './routes/invoke.ts';
import { createMetricsHandler } from './routes/metrics.ts';
import { createTerminalHandlers, TERMINAL_ASSETS_PATH } from './routes/terminal.ts';
import { SESSION_ROUTE, type Sessions } from './sessions/sessions.ts';
import { refuseUpgrades, takeUpgrades, upgradeOf } from './upgrade.ts';

/** What the app is made from. */
export interface AppOptions {
  registry: FunctionRegistry;
  runner: Runner;
  /** Serve functions' instances, which their requests and WebSockets go to. */
  instances: ServeInstances;
  health: () => RuntimeHealth;
  maxBody: number;
  /** FNIX_MAX_OUTPUT: a serve function's response body bytes at most. */
  maxOutput: number;
  /** The Host names requests may carry (gateway/host-check.ts). */
  hosts: HostAllowlist;
  log: Logger;
  /** True once shutdown has begun: /healthz reports 503. @default () => false */
  isShuttingDown?: () => boolean;
  /** Served at /metrics, and fed by the routes (GatewayMetrics.forRuntime makes them). */
  metrics: GatewayMetrics;
  /** Deploys by git push, and the admin API; both behind the deploy token. */
  deploys: DeployRoutesOptions;
  /** Live sessions: the route that takes `/sessions/<name>` upgrades (gateway/sessions/sessions.ts). */
  sessions: Pick<Sessions, 'open'>;
  /** Invocation records and log lines (runtime/records/), fed by the routes and read at /api. @default none */
  records?: Recorder | undefined;
  /** Private functions' invoke keys (docs/keys.md), and the token /metrics may need. */
  access: AccessOptions;
  /** The secrets /api/secrets manages, and the restarts a change starts (docs/secrets.md). */
  secrets: Pick<SecretsApiOptions, 'secrets' | 'rotation'>;
  /** This node's cluster, when it is one (docs/cluster.md): /healthz says so, and /api/cluster and /cluster/ answer. @default none */
  cluster?: Cluster | undefined;
  /** The deploy token, which a cluster node sends to the others when it gathers their logs. @default none */
  clusterToken?: string | undefined;
}

/** Who may invoke private functions, and read /metrics. */
export interface AccessOptions {
  /** The invoke keys, which /api/keys manages. */
  keys: KeyStore;
  /** The check in front of every way into a private function (the sessions' own is given to createSessions). */
  guard: KeyGuard;
  /** FNIX_METRICS_TOKEN's guard; undefined leaves /metrics open. */
  metricsToken: TokenGuard | undefined;
}

/** What the git endpoint and the admin API need. */
export interface DeployRoutesOptions {
  deployments: Deployments;
  token: TokenGuard;
  /** The folder holding functions.git. */
  gitRoot: string;
  /** The largest push, in bytes. */
  maxPushBytes: number;
}

/** The response header that names the cluster node that answered. */
export const NODE_HEADER = 'x-fnix-node';

/**
 * Creates the gateway's Hono app.
 * @example
 * const app = createApp({ registry, runner, health, maxBody: 6 << 20, hosts, log, metrics: GatewayMetrics.forRuntime(runtime), deploys });
 */
export function createApp(options: AppOptions): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  app.use('*', checkHost(options.hosts));
  const cluster = options.cluster;
  if (cluster) {
    // Which node answered, for operators behind a load balancer (and the cluster tests).
    app.use('*', async function nameTheNode(c, next) {
      await next();
      try {
        c.res.headers.set(NODE_HEADER, cluster.self);
      } catch {
        // a response whose headers are immutable (a proxied one): it goes unlabelled
      }
    });
  }
  // The one place that decides which routes take WebSocket upgrades: those registered here, before
  // refuseUpgrades answers any other upgrade with ROUTE_NOT_FOUND.
  const { metrics, registry, instances, log } = options;
  app.use(SESSION_ROUTE, takeUpgrades(options.sessions.open));
  // A serve function's own server takes the upgrades of its /fn/<name>/... URLs (a WebSocket server).
  app.use('/fn/*', takeUpgrades(createServeUpgrade({ registry, instances, log, keys: options.access.guard, records: options.records })));
  app.use('*', refuseUpgrades());
  app.use('/fn/*', function assignInvocationId(c, next) {
    c.set('invocationId', nanoid());
    return next();
  });
  const serve = createServeProxy({
    registry,
    instances,
    maxBody: options.maxBody,
    maxOutput: options.maxOutput,
    log,
    metrics,
    keys: options.access.guard,
    records: options.records,
  });
  const invoke = createInvokeHandler({
    ...options,
    serve,
    runner: instrumentRunner(options.runner, metrics, 'http', options.records),
    keys: options.access.guard,
  });
  app.all('/fn/:name', invoke);
  app.all('/fn/:name/*', invoke);
  app.get(
    '/healthz',
    createHealthHandler({ health: options.health, registry, instances, isShuttingDown: options.isShuttingDown ?? (() => false), cluster: options.cluster }),
  );
  app.get('/metrics', createMetricsHandler(metrics, options.access.metricsToken));
  const { deployments, token, gitRoot, maxPushBytes } = options.deploys;
  if (options.cluster) app.route('/', createClusterRoutes({ cluster: options.cluster, token }));
  app.all(`${GIT_PATH}/*`, createGitHandler({ gitRoot, token, deployments, log: options.log, maxBodyBytes: maxPushBytes + 1024 * 1024 }));
  app.route('/api', createAdminApi({ deployments, registry, instances, token }));
  app.route('/api', createKeysApi({ keys: options.access.keys, token }));
  if (options.records) {
    const gather = options.cluster && options.clusterToken ? { view: options.cluster, token: options.clusterToken } : undefined;
    app.route('/api', createLogsApi({ store: options.records.store, registry, token, log, cluster: gather }));
  }
  app.route('/api', createSecretsApi({ ...options.secrets, registry, token }));
  // The browser terminal; the WebSocket upgrade of the same URL was taken above.
  const terminal = createTerminalHandlers({ registry: options.registry });
  app.get('/sessions/:name', terminal.servePage);
  app.get(`${TERMINAL_ASSETS_PATH}/:file`, terminal.serveAsset);
  app.notFound((c) => errorResponse(new FnixError('ROUTE_NOT_FOUND', `no route for ${c.req.method} ${new URL(c.req.url).pathname}`)));
  app.onError(function handleError(error, c) {
    const fnixError = toFnixError(error);
    if (fnixError.code === 'INTERNAL_ERROR') {
      const what = upgradeOf(c) ? 'session upgrade failed' : 'request failed';
      options.log.error(what, { path: c.req.path, error: String(error), stack: (error as Error).stack });
    }
    const id = c.get('invocationId');
    return errorResponse(fnixError, id ? { [INVOCATION_ID_HEADER]: id } : {});
  });
  return app;
}
