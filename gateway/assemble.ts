/**
 * @module
 * What serves functions once the runtime is up: the metrics, the deployments (from git, behind the
 * token), the Hono app and the WebSocket sessions, wired together. main.ts and the tests' gateway both
 * assemble it here, so that what the tests run is what `npm start` runs.
 */
import type { Hono } from 'hono';
import { startDeploys, type Deploys } from '../runtime/deploy/deploys.ts';
import type { Logger } from '../runtime/log.ts';
import type { Runtime } from '../runtime/runtime.ts';
import { createApp } from './app.ts';
import { FailureLimiter } from './auth/failure-limiter.ts';
import { TokenGuard } from './auth/guard.ts';
import { TokenCheck } from './auth/token.ts';
import { instrumentRunner } from './metrics/instrument-runner.ts';
import { HostAllowlist } from './host-check.ts';
import { GatewayMetrics, type EdgeStats } from './metrics/metrics.ts';
import type { GatewayEnv } from './routes/invoke.ts';
import { createSessionUpgrade, type SessionUpgrade } from './sessions/upgrade.ts';

/** What {@link assembleGateway} needs. */
export interface GatewayOptions {
  runtime: Runtime;
  stateDir: string;
  log: Logger;
  /**
   * Serve deployments from git (the functions folder imported at first start), with /git and /api behind
   * `token`. Without it, the runtime serves the folder it was started with, as it is (tests only).
   */
  deploys?: { token: string; functionsDir: string | undefined; maxPushBytes: number; pushWaitMs?: number } | undefined;
  maxBody: number;
  /** FNIX_ALLOWED_HOSTS: names that requests may carry in Host, besides IP addresses and localhost. */
  allowedHosts: readonly string[];
  maxSessions: number;
  /** The largest WebSocket frame a session client may send. */
  sessionMaxFrame: number;
  sessionHeartbeatMs?: number | undefined;
  /** What the process and its server count (connections, caught errors), for /metrics. */
  edge?: EdgeStats | undefined;
  isShuttingDown: () => boolean;
}

/** The assembled gateway. */
export interface Gateway {
  app: Hono<GatewayEnv>;
  sessions: SessionUpgrade;
  deploys: Deploys | undefined;
  metrics: GatewayMetrics;
}

/** Wires the gateway around a started runtime (which the caller closes if this throws). */
export async function assembleGateway(options: GatewayOptions): Promise<Gateway> {
  const { runtime, log } = options;
  const metrics = GatewayMetrics.forRuntime(runtime, options.edge);
  const hosts = new HostAllowlist(options.allowedHosts);
  const deploys = options.deploys
    ? await startDeploys({
        runtime,
        stateDir: options.stateDir,
        functionsDir: options.deploys.functionsDir,
        maxPushBytes: options.deploys.maxPushBytes,
        pushWaitMs: options.deploys.pushWaitMs,
        log,
        onDeployment: (outcome, durationMs) => metrics.deploymentFinished(outcome, durationMs),
      })
    : undefined;
  const app = createApp({
    metrics,
    registry: runtime.registry,
    runner: runtime.runner,
    health: runtime.health,
    maxBody: options.maxBody,
    hosts,
    log,
    isShuttingDown: options.isShuttingDown,
    deploys: deploys && {
      deployer: deploys.deployer,
      pushes: deploys.pushes,
      token: new TokenGuard({ token: new TokenCheck(options.deploys!.token), limiter: new FailureLimiter(), log, metrics }),
      gitRoot: deploys.repository.root,
      maxPushBytes: options.deploys!.maxPushBytes,
    },
  });
  const sessions = createSessionUpgrade({
    registry: runtime.registry,
    runner: instrumentRunner(runtime.runner, metrics, 'session'),
    log,
    metrics,
    maxPayload: options.sessionMaxFrame,
    maxSessions: options.maxSessions,
    hosts,
    heartbeatMs: options.sessionHeartbeatMs,
    isShuttingDown: options.isShuttingDown,
  });
  return { app, sessions, deploys, metrics };
}
