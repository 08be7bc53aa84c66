/**
 * @module
 * `npm start`: reads the configuration, starts the runtime and the HTTP server, and shuts both down
 * on SIGINT or SIGTERM (running invocations get FNIX_SHUTDOWN_GRACE_MS to finish).
 */
import { join } from 'node:path';
import { startDeploys } from '../runtime/deploy/deploys.ts';
import { createLogger } from '../runtime/log.ts';
import { startRuntime } from '../runtime/runtime.ts';
import { createApp } from './app.ts';
import { loadToken, TokenCheck } from './auth/token.ts';
import { loadConfig } from './config.ts';
import { instrumentRunner } from './metrics/instrument-runner.ts';
import { GatewayMetrics } from './metrics/metrics.ts';
import { createSessionUpgrade } from './sessions/upgrade.ts';
import { startServer } from './server.ts';

const log = createLogger();
/** The largest WebSocket frame a session client may send. */
const SESSION_MAX_FRAME = 1024 * 1024;

async function main(): Promise<void> {
  const config = loadConfig(process.env);
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
  });
  const metrics = GatewayMetrics.forRuntime(runtime);
  let token;
  let deploys;
  try {
    token = await loadToken(config.stateDir, config.token);
    // What is served comes from the repository: the active deployment, or at first start the
    // functions folder, imported as the first commit.
    deploys = await startDeploys({
      runtime,
      stateDir: config.stateDir,
      functionsDir: config.functionsDir,
      maxPushBytes: config.maxPushBytes,
      log,
      onDeployment: (outcome, durationMs) => metrics.deploymentFinished(outcome, durationMs),
    });
  } catch (error) {
    await runtime.close(0);
    throw error;
  }
  if (token.source === 'generated') {
    // Shown once; it stays in the state folder (mode 0600).
    log.info(`deploy token (kept in ${join(config.stateDir, 'token')}): ${token.token}`);
  }
  let shuttingDown = false;
  const app = createApp({
    metrics,
    registry: runtime.registry,
    runner: runtime.runner,
    health: runtime.health,
    maxBody: config.maxBody,
    log,
    isShuttingDown: () => shuttingDown,
    deploys: {
      deployer: deploys.deployer,
      pushes: deploys.pushes,
      token: new TokenCheck(token.token),
      gitRoot: deploys.repository.root,
      maxPushBytes: config.maxPushBytes,
    },
  });
  const sessions = createSessionUpgrade({
    registry: runtime.registry,
    runner: instrumentRunner(runtime.runner, metrics, 'session'),
    log,
    metrics,
    maxPayload: SESSION_MAX_FRAME,
    maxSessions: config.maxSessions,
    isShuttingDown: () => shuttingDown,
  });
  const server = await startServer({ app, host: config.host, port: config.port, onUpgrade: sessions.handle }).catch(async (error: unknown) => {
    await deploys.close();
    await runtime.close(0);
    throw error;
  });
  log.info(`fnix is serving at ${server.url}; deploy with: git push ${server.url}/git/functions.git main`);

  const shutdown = async (signal: string) => {
    if (shuttingDown) {
      log.warn(`${signal} received again; still shutting down`);
      return;
    }
    shuttingDown = true;
    log.info('shutting down', { signal, graceMs: config.shutdownGraceMs });
    const closed = server.close();
    await sessions.closeAll();
    await deploys.close();
    await runtime.close(config.shutdownGraceMs);
    server.server.closeAllConnections();
    await closed;
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
}

main().catch((error: unknown) => {
  log.error(`fnix could not start: ${(error as Error).message ?? String(error)}`);
  process.exit(1);
});
