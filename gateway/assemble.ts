/**
 * @module
 * What serves functions, started from the configuration: the runtime, the deploy token, the metrics,
 * the deployments (the functions folder deployed as the first deployment, or what was deployed
 * before), the Hono app and the WebSocket sessions. gateway/main.ts starts it for `npm start`, and the
 * tests' gateway starts it the same way, so that what the tests run is what `npm start` runs.
 */
import { join } from 'node:path';
import type { Hono } from 'hono';
import { cleanDeployLeftovers, type Deployments, startDeployments } from '../deployments/deployments.ts';
import type { Logger } from '../runtime/log.ts';
import { type Runtime, startRuntime } from '../runtime/runtime.ts';
import { createApp } from './app.ts';
import { FailureLimiter } from './auth/failure-limiter.ts';
import { TokenGuard } from './auth/guard.ts';
import { loadToken, TokenCheck } from './auth/token.ts';
import type { Config } from './config.ts';
import { HostAllowlist } from './host-check.ts';
import { instrumentRunner } from './metrics/instrument-runner.ts';
import { type EdgeStats, GatewayMetrics } from './metrics/metrics.ts';
import type { GatewayEnv } from './routes/invoke.ts';
import { createSessions, type Sessions } from './sessions/sessions.ts';

/** The largest WebSocket frame a session client may send. */
export const SESSION_MAX_FRAME = 1024 * 1024;

/** What {@link startGateway} needs. */
export interface GatewayOptions {
  config: Config;
  log: Logger;
  /** What the process and its server count (connections, caught errors), for /metrics. */
  edge: EdgeStats;
  /** True once shutdown has begun: /healthz reports 503, new sessions are refused. */
  isShuttingDown: () => boolean;
  /** Timings no one sets from the environment, which the tests shorten. */
  tuning?: { sessionMaxFrame?: number; sessionHeartbeatMs?: number; pushWaitMs?: number } | undefined;
}

/** The started gateway. */
export interface Gateway {
  app: Hono<GatewayEnv>;
  sessions: Sessions;
  deployments: Deployments;
  runtime: Runtime;
  metrics: GatewayMetrics;
  /** Ends the sessions and the deployments, then the runtime (running invocations get `graceMs`). */
  close(graceMs: number): Promise<void>;
}

/** Starts the runtime and everything around it. Throws RUNTIME_UNAVAILABLE when Podman or Nix does not work. */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { config, log, tuning = {} } = options;
  const runtime = await startRuntime({
    stateDir: config.stateDir,
    packages: config.packages,
    allowedUris: config.allowedUris,
    binaryCaches: config.binaryCaches,
    poolSize: config.poolSize,
    maxContainers: config.maxContainers,
    idleTtlMs: config.idleTtlMs,
    queueTimeoutMs: config.queueTimeoutMs,
    maxOutputBytes: config.maxOutput,
    limits: config.limits,
    log,
    cleanStateDir: cleanDeployLeftovers(config.stateDir, log),
  });
  let deployments: Deployments | undefined;
  try {
    const token = await loadToken(config.stateDir, config.token);
    const metrics = GatewayMetrics.forRuntime(runtime, options.edge);
    const hosts = new HostAllowlist(config.allowedHosts);
    // What is served comes from the repository: the active deployment, or at first start the
    // functions folder, imported as the first commit.
    deployments = await startDeployments({
      runtime,
      stateDir: config.stateDir,
      functionsDir: config.functionsDir,
      maxPushBytes: config.maxPushBytes,
      pushWaitMs: tuning.pushWaitMs,
      historyLimit: config.historyLimit,
      log,
      onDeployment: (outcome, durationMs) => metrics.deploymentFinished(outcome, durationMs),
    });
    const sessions = createSessions({
      registry: runtime.registry,
      runner: instrumentRunner(runtime.runner, metrics, 'session'),
      log,
      metrics,
      maxPayload: tuning.sessionMaxFrame ?? SESSION_MAX_FRAME,
      maxSessions: config.maxSessions,
      heartbeatMs: tuning.sessionHeartbeatMs,
      isShuttingDown: options.isShuttingDown,
    });
    const app = createApp({
      metrics,
      registry: runtime.registry,
      runner: runtime.runner,
      instances: runtime.instances,
      health: runtime.health,
      maxBody: config.maxBody,
      maxOutput: config.maxOutput,
      hosts,
      log,
      isShuttingDown: options.isShuttingDown,
      deploys: {
        deployments,
        token: new TokenGuard({ token: new TokenCheck(token.token), limiter: new FailureLimiter(), log, metrics }),
        gitRoot: deployments.repository.root,
        maxPushBytes: config.maxPushBytes,
      },
      sessions,
    });
    if (token.source === 'generated') {
      // Shown once; it stays in the state folder (mode 0600).
      log.info(`deploy token (kept in ${join(config.stateDir, 'token')}): ${token.token}`);
    }
    const started = deployments;
    return {
      app,
      sessions,
      deployments: started,
      runtime,
      metrics,
      async close(graceMs) {
        await sessions.closeAll();
        await started.close();
        await runtime.close(graceMs);
      },
    };
  } catch (error) {
    await deployments?.close();
    await runtime.close(0);
    throw error;
  }
}
