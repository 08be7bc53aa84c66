/**
 * @module
 * Starts a real fnix for a test file, the way `npm start` does (gateway/assemble.ts: the runtime with
 * real Podman and Nix, the functions folder deployed through git as the first deployment, the app),
 * behind the HTTP server on a free port, with a state folder of its own. The configuration is the
 * production one (loadConfig's defaults) with a smaller pool and the test's own settings; log lines
 * are kept so tests can assert on them.
 */
import { cp, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HttpBindings } from '@hono/node-server';
import type { Deployments } from '../../deployments/deployments.ts';
import { type Gateway, type GatewayOptions, startGateway } from '../../gateway/assemble.ts';
import { type Config, loadConfig } from '../../gateway/config.ts';
import { type RunningServer, startServer } from '../../gateway/server.ts';
import type { Sessions } from '../../gateway/sessions/sessions.ts';
import { createUpgradeHandler, type UpgradeBindings } from '../../gateway/upgrade.ts';
import { createLogger } from '../../runtime/log.ts';
import { linesOf } from './log-lines.ts';
import type { Runtime } from '../../runtime/runtime.ts';

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
  sessions: Sessions;
  /** The deployments: the repository (which git and the admin API take TEST_TOKEN for) and the records. */
  deployments: Deployments;
  token: string;
  stateDir: string;
  /** Every log line written so far. */
  logs: string[];
  close(): Promise<void>;
}

/** Any setting of the configuration, and what the tests shorten (gateway/assemble.ts's tuning) or bound. */
export type TestGatewayOptions = Partial<Omit<Config, 'limits'>> & {
  limits?: Partial<Config['limits']>;
  /** The server's header deadline (30 s in production). */
  headersTimeoutMs?: number;
} & NonNullable<GatewayOptions['tuning']>;

/** What a test gateway differs by from `npm start`'s defaults: a smaller pool, for 2 CPUs that run many. */
const TEST_DEFAULTS: Partial<Config> = {
  port: 0,
  poolSize: 2,
  maxContainers: 8,
  idleTtlMs: 60_000,
  maxPushBytes: 16 * 1024 * 1024,
  maxConnections: 4096,
};

/** Starts fnix serving `functionsDir` (the fixtures by default), deployed as `npm start` deploys it. */
export async function startTestGateway(options: TestGatewayOptions = {}): Promise<TestGateway> {
  const stateDir = options.stateDir ?? (await mkdtemp(join(tmpdir(), 'fnix-test-')));
  const { headersTimeoutMs, sessionMaxFrame, sessionHeartbeatMs, pushWaitMs, limits, ...settings } = options;
  const production = loadConfig({});
  const config: Config = {
    ...production,
    ...TEST_DEFAULTS,
    functionsDir: FIXTURES_DIR,
    token: TEST_TOKEN,
    ...settings,
    stateDir,
    limits: { ...production.limits, ...limits },
  };
  const logs: string[] = [];
  const log = createLogger({ stream: { write: (text: string) => logs.push(...linesOf(text)) } });
  // The port first, as main.ts takes it: the gateway's metrics read the server's connections.
  let gateway: Gateway | undefined;
  const app = { fetch: (request: Request, env: HttpBindings | UpgradeBindings) => gateway!.app.fetch(request, env) };
  const server = await startServer({
    app,
    host: '127.0.0.1',
    port: config.port,
    maxConnections: config.maxConnections ?? 4096,
    log,
    onUpgrade: createUpgradeHandler({ app, log }),
    headersTimeoutMs,
  });
  try {
    gateway = await startGateway({
      config,
      log,
      edge: { connections: server.connections },
      isShuttingDown: () => false,
      tuning: { sessionMaxFrame, sessionHeartbeatMs, pushWaitMs: pushWaitMs ?? 60_000 },
    });
  } catch (error) {
    await server.close();
    throw error;
  }
  const started = gateway;
  return {
    url: server.url,
    runtime: started.runtime,
    server,
    sessions: started.sessions,
    deployments: started.deployments,
    token: TEST_TOKEN,
    stateDir,
    logs,
    async close() {
      await started.sessions.closeAll();
      server.server.closeAllConnections();
      await server.close();
      await started.close(1000);
      if (!options.stateDir) await rm(stateDir, { recursive: true, force: true });
    },
  };
}

/** A temporary functions folder holding copies of the fixtures `names` only. */
export async function fixtures(...names: string[]): Promise<string> {
  const target = await mkdtemp(join(tmpdir(), 'fnix-functions-'));
  for (const name of names) await cp(join(FIXTURES_DIR, name), join(target, name), { recursive: true });
  return target;
}

/**
 * The examples without their serve functions (counter-py, counter-node), whose instances hold a
 * container each for good: for a test that counts the pool's capacity in containers.
 */
export async function perInvocationExamples(): Promise<string> {
  const target = await functionsFrom(EXAMPLES_DIR);
  for (const name of await readdir(target)) {
    const manifest = JSON.parse(await readFile(join(target, name, 'function.json'), 'utf8')) as { serve?: unknown };
    if (manifest.serve) await rm(join(target, name), { recursive: true });
  }
  return target;
}

/** A temporary functions folder holding copies of `dirs`' function folders (later ones win). */
export async function functionsFrom(...dirs: string[]): Promise<string> {
  const target = await mkdtemp(join(tmpdir(), 'fnix-functions-'));
  for (const dir of dirs) await cp(dir, target, { recursive: true });
  return target;
}
