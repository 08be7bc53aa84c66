/**
 * @module
 * `npm start`: reads the configuration, starts the HTTP server and then the gateway (assemble.ts;
 * retrying, and answering 503 with the cause, while Podman or Nix does not work), and shuts both down
 * on SIGINT, SIGTERM or SIGHUP (running invocations get FNIX_SHUTDOWN_GRACE_MS to finish).
 */
import type { HttpBindings } from '@hono/node-server';
import { FnixError } from '../runtime/errors.ts';
import { createLogger } from '../runtime/log.ts';
import { guardSpawn } from '../runtime/spawn-guard.ts';
import { type Gateway, startGateway } from './assemble.ts';
import { type Config, loadConfig } from './config.ts';
import { connectionBudget, readOpenFilesLimit, reserveFor } from './connection-limit.ts';
import { createDegradedApp } from './degraded.ts';
import { HostAllowlist } from './host-check.ts';
import type { EdgeStats } from './metrics/metrics.ts';
import { guardProcess } from './process-guards.ts';
import { type RunningServer, startServer } from './server.ts';
import { createUpgradeHandler, type UpgradeBindings } from './upgrade.ts';

const log = createLogger();
/** The variables that carry credentials, dropped from the environment once read (docs/configuration.md). */
const CREDENTIAL_VARIABLES = ['FNIX_TOKEN', 'FNIX_SECRETS_KEY', 'FNIX_METRICS_TOKEN'] as const;
/** While Podman or Nix does not work, how often starting the runtime is tried again. */
const RETRY_MS = 5000;
/** How often the open-files limit is read again (`prlimit` can lower it under a running process). */
const LIMIT_CHECK_MS = 10_000;

async function main(): Promise<void> {
  const unhandled = guardProcess(log);
  guardSpawn();
  const config = loadConfig(process.env);
  // Read once, into the config: no child (podman, conmon, nix, git) inherits them, where they would
  // show in its /proc/<pid>/environ. Nothing reads them from process.env after this.
  for (const name of CREDENTIAL_VARIABLES) delete process.env[name];
  const budget = connectionBudget({ openFiles: readOpenFilesLimit(), maxContainers: config.maxContainers, configured: config.maxConnections });
  log.info('connections', { maxConnections: budget.maxConnections, openFilesLimit: budget.openFiles, keptForFnix: budget.reserve });
  let shuttingDown = false;
  let serving: Gateway | undefined;
  let starting: Promise<Gateway> | undefined;
  let wakeRetry = () => {};
  let cause = new FnixError('RUNTIME_UNAVAILABLE', 'fnix is starting');
  const degraded = createDegradedApp(() => cause, new HostAllowlist(config.allowedHosts));
  // The port is taken first: while the runtime cannot start, /healthz says why and requests get 503.
  // Upgrade requests go to the same app as the others, the degraded one included.
  const app = { fetch: (request: Request, env: HttpBindings | UpgradeBindings) => (serving?.app ?? degraded).fetch(request, env) };
  const server = await startServer({
    app,
    host: config.host,
    port: config.port,
    maxConnections: budget.maxConnections,
    log,
    onUpgrade: createUpgradeHandler({ app, log }),
  });
  log.info(`listening at ${server.url}`);
  const limitCheck = followOpenFilesLimit(server, config, budget.openFiles);
  const edge: EdgeStats = { connections: server.connections, unhandled };

  const shutdown = async (signal: string) => {
    if (shuttingDown) {
      log.warn(`${signal} received again; still shutting down`);
      return;
    }
    shuttingDown = true;
    clearInterval(limitCheck);
    log.info('shutting down', { signal, graceMs: config.shutdownGraceMs });
    wakeRetry();
    const closed = server.close();
    // A runtime still starting is waited for, and closed like a running one: its containers go too.
    const running = serving ?? (await starting?.catch(() => undefined));
    if (running) await running.close(config.shutdownGraceMs);
    server.server.closeAllConnections();
    await closed;
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  // A closed terminal: the same graceful drain, rather than Node's default of dying on the spot.
  process.on('SIGHUP', () => void shutdown('SIGHUP'));

  // Podman or Nix may be missing or failing now and work later (installed, repaired): keep trying.
  while (!shuttingDown) {
    try {
      starting = startGateway({ config, log, edge, isShuttingDown: () => shuttingDown });
      const started = await starting;
      if (shuttingDown) return; // shutdown has it, and closes it
      serving = started;
      log.info(`fnix is serving at ${server.url}; deploy with: git push ${server.url}/git/functions.git main`);
      return;
    } catch (error) {
      // A cluster node whose etcd is unreachable at start (a cold boot of every host) tries again too.
      if (!(error instanceof FnixError && (error.code === 'RUNTIME_UNAVAILABLE' || error.code === 'CLUSTER_UNAVAILABLE'))) throw error;
      cause = error;
      log.error(`fnix cannot serve functions yet: ${error.message}; trying again in ${RETRY_MS / 1000} s`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, RETRY_MS);
        wakeRetry = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
}

/**
 * Reads the open-files limit again now and then: when it changes under the running process, the bound
 * on connections follows, so that fnix keeps the descriptors its own work needs.
 */
function followOpenFilesLimit(server: RunningServer, config: Config, initial: number | undefined): NodeJS.Timeout {
  let known = initial;
  const timer = setInterval(() => {
    const openFiles = readOpenFilesLimit();
    if (openFiles === known) return;
    known = openFiles;
    let maxConnections: number;
    try {
      maxConnections = connectionBudget({ openFiles, maxContainers: config.maxContainers, configured: config.maxConnections }).maxConnections;
    } catch (error) {
      // Too low for the budget: as many connections as it leaves, at least one.
      log.error(String((error as Error).message));
      maxConnections = Math.max(1, (openFiles ?? 0) - reserveFor(config.maxContainers));
    }
    server.setMaxConnections(maxConnections);
    log.warn('the open-files limit changed; the bound on connections follows it', { openFilesLimit: openFiles, maxConnections });
  }, LIMIT_CHECK_MS);
  timer.unref();
  return timer;
}

main().catch((error: unknown) => {
  log.error(`fnix could not start: ${(error as Error).message ?? String(error)}`);
  process.exit(1);
});
