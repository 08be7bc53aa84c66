/**
 * @module
 * Starts a real fnix for a test file: the runtime (real Podman, real Nix) and the HTTP server on a free
 * port, with a state folder of its own. Log lines are kept so tests can assert on them.
 */
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { assembleGateway } from '../../gateway/assemble.ts';
import type { Hono } from 'hono';
import type { GatewayEnv } from '../../gateway/routes/invoke.ts';
import type { SessionUpgrade } from '../../gateway/sessions/upgrade.ts';
import { startServer, type RunningServer } from '../../gateway/server.ts';
import { cleanDeployLeftovers, type Deploys } from '../../runtime/deploy/deploys.ts';
import { createLogger } from '../../runtime/log.ts';
import { startRuntime, type Runtime, type RuntimeOptions } from '../../runtime/runtime.ts';

/** The deploy token of test gateways. */
export const TEST_TOKEN = 'test-token-0123456789';

/** The example functions that ship with fnix. */
export const EXAMPLES_DIR = fileURLToPath(new URL('../../functions', import.meta.url));
/** Test-only functions (forever, exit-3, ...). */
export const FIXTURES_DIR = fileURLToPath(new URL('../fixtures/functions', import.meta.url));

/** A running test gateway. */
export interface TestGateway {
  url: string;
  runtime: Runtime;
  server: RunningServer;
  sessions: SessionUpgrade;
  /** With `deploys: true`: the deployments, and the token that git and the admin API take. */
  deploys: Deploys | undefined;
  token: string;
  stateDir: string;
  /** Every log line written so far. */
  logs: string[];
  close(): Promise<void>;
}

/** Options: any runtime option, plus the body limit. */
export type TestGatewayOptions = Partial<Omit<RuntimeOptions, 'log' | 'limits'>> & {
  maxBody?: number;
  /** FNIX_ALLOWED_HOSTS. @default [] */
  allowedHosts?: string[];
  sessionMaxFrame?: number;
  maxSessions?: number;
  sessionHeartbeatMs?: number;
  /** The server's header deadline (30 s in production). */
  headersTimeoutMs?: number;
  /** The server's bound on connections. @default 4096 */
  maxConnections?: number;
  /**
   * Serve through deployments, as `npm start` does: the functions folder is imported into the git
   * repository as the first deployment (when the repository is empty), and /git and /api are on.
   * Without it the folder is built and served directly, broken functions included.
   */
  deploys?: boolean;
  limits?: Partial<RuntimeOptions['limits']>;
};

/** Starts fnix serving `functionsDir` (the fixtures by default). */
export async function startTestGateway(options: TestGatewayOptions = {}): Promise<TestGateway> {
  const stateDir = options.stateDir ?? (await mkdtemp(join(tmpdir(), 'fnix-test-')));
  const logs: string[] = [];
  const log = createLogger({ stream: { write: (line: string) => logs.push(line) } });
  const runtime = await startRuntime({
    poolSize: 2,
    maxContainers: 8,
    idleTtlMs: 60_000,
    queueTimeoutMs: 10_000,
    maxOutputBytes: 100 * 1024 * 1024,
    ...options,
    functionsDir: options.deploys ? undefined : (options.functionsDir ?? FIXTURES_DIR),
    stateDir,
    limits: { memoryMb: 256, pidsLimit: 256, nofile: 1024, tmpMb: 64, shmMb: 16, cpus: 1, ...options.limits },
    log,
    cleanStateDir: options.deploys ? cleanDeployLeftovers(stateDir, log) : undefined,
  });
  const token = TEST_TOKEN;
  // The port first, as main.ts takes it: the gateway's metrics read the server's connections.
  let app: Hono<GatewayEnv> | undefined;
  let sessions: SessionUpgrade | undefined;
  const server = await startServer({
    app: { fetch: (request, env) => app!.fetch(request, env) },
    host: '127.0.0.1',
    port: 0,
    maxConnections: options.maxConnections ?? 4096,
    log,
    onUpgrade: (request, socket, head) => sessions!.handle(request, socket, head),
    headersTimeoutMs: options.headersTimeoutMs,
  });
  let deploys: Deploys | undefined;
  try {
    ({ app, sessions, deploys } = await assembleGateway({
      runtime,
      stateDir,
      log,
      deploys: options.deploys ? { token, functionsDir: options.functionsDir ?? FIXTURES_DIR, maxPushBytes: 16 * 1024 * 1024, pushWaitMs: 60_000 } : undefined,
      maxBody: options.maxBody ?? 6 * 1024 * 1024,
      allowedHosts: options.allowedHosts ?? [],
      maxSessions: options.maxSessions ?? 32,
      sessionMaxFrame: options.sessionMaxFrame ?? 1024 * 1024,
      sessionHeartbeatMs: options.sessionHeartbeatMs,
      edge: { connections: server.connections },
      isShuttingDown: () => false,
    }));
  } catch (error) {
    await server.close();
    await runtime.close(0);
    throw error;
  }
  return {
    url: server.url,
    runtime,
    server,
    sessions: sessions!,
    deploys,
    token,
    stateDir,
    logs,
    async close() {
      await sessions!.closeAll();
      server.server.closeAllConnections();
      await server.close();
      await deploys?.close();
      await runtime.close(1000);
      if (!options.stateDir) await rm(stateDir, { recursive: true, force: true });
    },
  };
}

/** A temporary functions folder holding copies of `dirs`' function folders (later ones win). */
export async function functionsFrom(...dirs: string[]): Promise<string> {
  const target = await mkdtemp(join(tmpdir(), 'fnix-functions-'));
  for (const dir of dirs) await cp(dir, target, { recursive: true });
  return target;
}
