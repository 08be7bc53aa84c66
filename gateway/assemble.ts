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
import type { ErrorCode } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import { Recorder } from '../runtime/records/recorder.ts';
import { RecordStore } from '../runtime/records/store.ts';
import { type Runtime, startRuntime } from '../runtime/runtime.ts';
import { FileSecretStore } from '../runtime/secrets/file-store.ts';
import { SecretRotation } from '../runtime/secrets/rotation.ts';
import { type Cluster, createCluster } from '../cluster/cluster.ts';
import { createApp } from './app.ts';
import { type ClusterState, openClusterState } from './cluster-state.ts';
import type { KeyStore } from './auth/keys/store.ts';
import { FailureLimiter } from './auth/failure-limiter.ts';
import { TokenGuard } from './auth/guard.ts';
import { FileKeyStore } from './auth/keys/file-store.ts';
import { KeyGuard } from './auth/keys/guard.ts';
import { loadToken, TokenCheck } from './auth/token.ts';
import type { Config } from './config.ts';
import { STATUS_BY_CODE } from './errors.ts';
import { HostAllowlist } from './host-check.ts';
import { instrumentRunner } from './metrics/instrument-runner.ts';
import { type EdgeStats, GatewayMetrics } from './metrics/metrics.ts';
import type { GatewayEnv } from './routes/invoke.ts';
import { createSessions, type Sessions } from './sessions/sessions.ts';

/** The largest WebSocket frame a session client may send. */
export const SESSION_MAX_FRAME = 1024 * 1024;
/** How long shutdown waits for the records of the invocations that have ended but are not yet recorded. */
const RECORDS_SETTLE_MS = 1500;

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
  const { config, log } = options;
  // A cluster node (docs/cluster.md): its etcd client first, since the secrets and the deployments go through it.
  const cluster = config.cluster ? createCluster({ settings: config.cluster, stateDir: config.stateDir, token: config.token!, log }) : undefined;
  let state: ClusterState | undefined;
  try {
    // The cluster's secrets and invoke keys, in etcd: opened first, so that a wrong FNIX_SECRETS_KEY stops the start.
    if (cluster) state = await openClusterState({ client: cluster.client, keys: cluster.keys, secretsKey: config.secretsKey!, log });
    return await assembleGateway(options, cluster, state);
  } catch (error) {
    await cluster?.leave().catch(() => {});
    await state?.close().catch(() => {});
    cluster?.disconnect();
    throw error;
  }
}

async function assembleGateway(options: GatewayOptions, cluster: Cluster | undefined, state: ClusterState | undefined): Promise<Gateway> {
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
    openSecrets: state ? async () => state.secrets : (stateDir) => FileSecretStore.open({ stateDir, key: config.secretsKey }),
  });
  let deployments: Deployments | undefined;
  let keyStore: (KeyStore & { close(): Promise<void> }) | undefined;
  let recordStore: RecordStore | undefined;
  try {
    // Invocation records and log lines (docs/logs.md): opened once the runtime holds the state folder's lock.
    const records = RecordStore.open({ stateDir: config.stateDir, bounds: config.records, log });
    recordStore = records;
    let liveDeployment: string | undefined;
    const refreshDeployment = () =>
      void deployments?.records.current().then(
        (id) => (liveDeployment = id),
        () => {},
      );
    const recorder = new Recorder({ store: records, deployment: () => liveDeployment, statusOf: (code) => STATUS_BY_CODE[code as ErrorCode] ?? 500 });
    runtime.instances.output(({ function: name, instance, invocationId, stream, line }) =>
      recorder.line({ function: name, instance, invocationId, stream, line }),
    );
    const token = await loadToken(config.stateDir, config.token);
    const metrics = GatewayMetrics.forRuntime(runtime, options.edge);
    const hosts = new HostAllowlist(config.allowedHosts);
    // Invoke keys for private functions, and who may read /metrics (docs/keys.md). Wrong keys and
    // wrong metrics tokens are limited per address apart from the deploy token's failures.
    const keys = state ? state.invokeKeys : await FileKeyStore.open({ stateDir: config.stateDir });
    keyStore = keys;
    keys.onChange(({ type, key }) => log.info(`invoke key ${type}`, { id: key.id, name: key.name, function: key.function ?? '*' }));
    const keyGuard = new KeyGuard({ keys, limiter: new FailureLimiter(), log, metrics });
    const metricsToken = config.metricsToken
      ? new TokenGuard({ token: new TokenCheck(config.metricsToken, 'the metrics token (FNIX_METRICS_TOKEN)'), limiter: new FailureLimiter(), log, metrics })
      : undefined;
    // What is served comes from the repository: the active deployment, or at first start the
    // functions folder, imported as the first commit.
    deployments = await startDeployments({
      runtime,
      stateDir: config.stateDir,
      // A cluster's first deployment is a push to its builder; every node then follows the live one.
      functionsDir: cluster ? undefined : config.functionsDir,
      goLive: cluster?.goLive,
      refusePush: cluster?.refusePush,
      maxPushBytes: config.maxPushBytes,
      pushWaitMs: tuning.pushWaitMs,
      historyLimit: config.historyLimit,
      log,
      onDeployment: (outcome, durationMs) => {
        metrics.deploymentFinished(outcome, durationMs);
        refreshDeployment();
      },
      secretNames: () => new Set(runtime.secrets.list().map((secret) => secret.name)),
      holdSecrets: (names) => runtime.secrets.hold(names),
    });
    // A cluster node serves the cluster's live deployment before it says it is healthy.
    if (cluster) await cluster.start({ deployments, onStoreChanged: () => runtime.pool.markStoreChanged() });
    liveDeployment = await deployments.records.current();
    // A secret set (or rotated) restarts the serve functions declaring it; the names, never the values, are logged.
    const rotation = new SecretRotation({ store: runtime.secrets, registry: runtime.registry, instances: runtime.instances, log });
    runtime.secrets.onChange(({ name, kind }) => log.info(`secret ${kind}`, { secret: name }));
    const sessions = createSessions({
      registry: runtime.registry,
      runner: instrumentRunner(runtime.runner, metrics, 'session', recorder),
      log,
      metrics,
      maxPayload: tuning.sessionMaxFrame ?? SESSION_MAX_FRAME,
      maxSessions: config.maxSessions,
      heartbeatMs: tuning.sessionHeartbeatMs,
      isShuttingDown: options.isShuttingDown,
      keys: keyGuard,
      records: recorder,
      node: cluster?.self,
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
      access: { keys, guard: keyGuard, metricsToken },
      secrets: { secrets: runtime.secrets, rotation },
      records: recorder,
      cluster,
      clusterToken: cluster ? token.token : undefined,
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
        // First: another builder is elected at once, and pushes stop waiting for this node.
        await cluster?.leave().catch((error: unknown) => log.warn('leaving the cluster failed', { error: String(error) }));
        await sessions.closeAll();
        await started.close();
        // The keys' last uses are only a note: failing to write them must not keep the runtime up.
        await keys.close().catch((error: unknown) => log.error("could not write the invoke keys' last uses", { error: String(error) }));
        await runtime.close(graceMs);
        // Last, so that what the runtime's last invocations and instances wrote is in; their records
        // are written a moment after they end (a serve request's after its failure is explained): waited for.
        await records.settle(RECORDS_SETTLE_MS);
        records.close();
        await state?.close().catch(() => {});
        cluster?.disconnect();
      },
    };
  } catch (error) {
    await deployments?.close();
    await keyStore?.close().catch(() => {});
    await runtime.close(0);
    recordStore?.close();
    throw error;
  }
}
