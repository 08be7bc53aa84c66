/**
 * @module
 * `npm start`: reads the configuration, starts the HTTP server and then the runtime (retrying, and
 * answering 503 with the cause, while Podman or Nix does not work), and shuts both down on SIGINT or
 * SIGTERM (running invocations get FNIX_SHUTDOWN_GRACE_MS to finish).
 */
import { join } from 'node:path';
import type { Hono } from 'hono';
import { cleanDeployLeftovers, type Deploys } from '../runtime/deploy/deploys.ts';
import { FnixError } from '../runtime/errors.ts';
import { createLogger } from '../runtime/log.ts';
import { startRuntime, type Runtime } from '../runtime/runtime.ts';
import { guardSpawn } from '../runtime/spawn-guard.ts';
import { assembleGateway } from './assemble.ts';
import { loadToken } from './auth/token.ts';
import { loadConfig, type Config } from './config.ts';
import { connectionBudget, readOpenFilesLimit, reserveFor } from './connection-limit.ts';
import type { EdgeStats } from './metrics/metrics.ts';
import { guardProcess } from './process-guards.ts';
import type { GatewayEnv } from './routes/invoke.ts';
import { createDegradedApp } from './degraded.ts';
import { HostAllowlist } from './host-check.ts';
import { rejectUpgrade, type SessionUpgrade } from './sessions/upgrade.ts';
import { startServer, type RunningServer } from './server.ts';

const log = createLogger();
/** The largest WebSocket frame a session client may send. */
const SESSION_MAX_FRAME = 1024 * 1024;
/** While Podman or Nix does not work, how often starting the runtime is tried again. */
const RETRY_MS = 5000;
/** How often the open-files limit is read again (`prlimit` can lower it under a running process). */
const LIMIT_CHECK_MS = 10_000;

async function main(): Promise<void> {
  const unhandled = guardProcess(log);
  guardSpawn();
  const config = loadConfig(process.env);
  const budget = connectionBudget({ openFiles: readOpenFilesLimit(), maxContainers: config.maxContainers, configured: config.maxConnections });
  log.info('connections', { maxConnections: budget.maxConnections, openFilesLimit: budget.openFiles, keptForFnix: budget.reserve });
  let shuttingDown = false;
  let serving: Serving | undefined;
  let starting: Promise<Serving> | undefined;
  let wakeRetry = () => {};
  let cause = new FnixError('RUNTIME_UNAVAILABLE', 'fnix is starting');
  const degraded = createDegradedApp(() => cause, new HostAllowlist(config.allowedHosts));
  // The port is taken first: while the runtime cannot start, /healthz says why and requests get 503.
  const server = await startServer({
    app: { fetch: (request, env) => (serving?.app ?? degraded).fetch(request, env) },
    host: config.host,
    port: config.port,
    maxConnections: budget.maxConnections,
    log,
    onUpgrade: (request, socket, head) => {
      if (serving) serving.sessions.handle(request, socket, head);
      else rejectUpgrade(socket, cause);
    },
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
    if (running) {
      await running.sessions.closeAll();
      await running.deploys.close();
      await running.runtime.close(config.shutdownGraceMs);
    }
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
      starting = startServing(config, edge, () => shuttingDown);
      const started = await starting;
      if (shuttingDown) return; // shutdown has it, and closes it
      serving = started;
      log.info(`fnix is serving at ${server.url}; deploy with: git push ${server.url}/git/functions.git main`);
      return;
    } catch (error) {
      if (!(error instanceof FnixError && error.code === 'RUNTIME_UNAVAILABLE')) throw error;
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

/** Everything that serves functions, once the runtime has started. */
interface Serving {
  app: Hono<GatewayEnv>;
  sessions: SessionUpgrade;
  deploys: Deploys;
  runtime: Runtime;
}

/** Starts the runtime, the deployments and the apps. Throws RUNTIME_UNAVAILABLE when Podman or Nix does not work. */
async function startServing(config: Config, edge: EdgeStats, isShuttingDown: () => boolean): Promise<Serving> {
  const runtime = await startRuntime({
    stateDir: config.stateDir,
    packages: config.packages,
    poolSize: config.poolSize,
    maxContainers: config.maxContainers,
    idleTtlMs: config.idleTtlMs,
    queueTimeoutMs: config.queueTimeoutMs,
    maxOutputBytes: config.maxOutput,
    limits: {
      memoryMb: 256,
      pidsLimit: config.pidsLimit,
      nofile: config.nofile,
      tmpMb: Math.ceil(config.tmpBytes / (1024 * 1024)),
      shmMb: 16,
      cpus: config.cpus,
    },
    log,
    cleanStateDir: cleanDeployLeftovers(config.stateDir, log),
  });
  let token: Awaited<ReturnType<typeof loadToken>>;
  let gateway: Awaited<ReturnType<typeof assembleGateway>>;
  try {
    token = await loadToken(config.stateDir, config.token);
    // What is served comes from the repository: the active deployment, or at first start the
    // functions folder, imported as the first commit.
    gateway = await assembleGateway({
      runtime,
      stateDir: config.stateDir,
      log,
      deploys: { token: token.token, functionsDir: config.functionsDir, maxPushBytes: config.maxPushBytes },
      maxBody: config.maxBody,
      allowedHosts: config.allowedHosts,
      maxSessions: config.maxSessions,
      sessionMaxFrame: SESSION_MAX_FRAME,
      edge,
      isShuttingDown,
    });
  } catch (error) {
    await runtime.close(0);
    throw error;
  }
  if (token.source === 'generated') {
    // Shown once; it stays in the state folder (mode 0600).
    log.info(`deploy token (kept in ${join(config.stateDir, 'token')}): ${token.token}`);
  }
  const { app, sessions } = gateway;
  const deploys = gateway.deploys!;
  return { app, sessions, deploys, runtime };
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
