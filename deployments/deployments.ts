/**
 * @module
 * Puts deployments together for a running runtime: the repository and its hooks, the records, the
 * deployer, the hook socket, and what to serve at start (the active deployment; or, with an empty
 * repository, the functions folder imported as the first commit).
 */
import type { Server, Socket } from 'node:net';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../log.ts';
import type { Runtime } from '../runtime.ts';
import { Deployer } from './deployer.ts';
import { DEPLOY_REF, Repository } from './git.ts';
import { startHookServer } from './hook-server.ts';
import { deployLayout } from './layout.ts';
import { removeDeployLeftovers } from './leftovers.ts';
import { PushDeploys } from './pushes.ts';
import { DeploymentStore } from './records.ts';

/** Options of {@link startDeploys}. */
export interface DeploysOptions {
  runtime: Runtime;
  stateDir: string;
  /** Imported as the first deployment when the repository is empty. */
  functionsDir?: string | undefined;
  /** receive.maxInputSize: the largest pack a push may send. */
  maxPushBytes: number;
  log: Logger;
  /** Told how each deployment went (the metrics). */
  onDeployment?: ((outcome: 'activated' | 'partial' | 'refused', durationMs: number) => void) | undefined;
  /** How long a push waits for another one. */
  pushWaitMs?: number;
}

/** Deployments, started. */
export interface Deploys {
  deployer: Deployer;
  pushes: PushDeploys;
  repository: Repository;
  close(): Promise<void>;
}

const HOOK_SCRIPT = fileURLToPath(new URL('./hook.mjs', import.meta.url));

/** Starts deployments and serves the active one. */
export async function startDeploys(options: DeploysOptions): Promise<Deploys> {
  const { runtime, stateDir, log } = options;
  const { gitRoot, recordsDir, stagingDir, buildsDir } = deployLayout(stateDir);
  const socketPath = join(gitRoot, 'hook.sock');
  const hook = (name: string) => `#!/bin/sh\nexec ${quote(process.execPath)} ${quote(HOOK_SCRIPT)} ${name} ${quote(socketPath)}\n`;
  const repository = await Repository.open({
    root: gitRoot,
    maxPushBytes: options.maxPushBytes,
    hooks: { preReceive: hook('pre-receive'), postReceive: hook('post-receive') },
  });
  const store = new DeploymentStore(recordsDir);
  await store.init();
  // Emptied at start by cleanDeployLeftovers, which the runtime runs once the state folder is locked.
  await mkdir(stagingDir, { recursive: true, mode: 0o700 });
  const deployer = new Deployer({
    repository,
    store,
    resolver: runtime.resolver,
    runner: runtime.runner,
    registry: runtime.registry,
    pool: runtime.pool,
    buildsDir,
    stagingDir,
    log,
    onDeployment: options.onDeployment,
  });
  const pushes = new PushDeploys(deployer, {
    waitMs: options.pushWaitMs,
    onError: (error) => log.error('a push left pending could not be settled', { error: String(error) }),
  });
  const server: Server = await startHookServer(socketPath, repository.gitDir, pushes, log);
  // Hooks under way at shutdown are cut (their push is refused), so that a long build cannot hold it up.
  const hooks = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    hooks.add(socket);
    socket.once('close', () => hooks.delete(socket));
  });

  // A deployment that cannot be restored (its commit gone from the repository, say) must not stop fnix
  // from starting, again and again: main is deployed instead, as when there is none.
  const restored = await deployer.restore().catch((error: unknown) => {
    log.error('the active deployment could not be served again; deploying main instead', { error: error instanceof Error ? error.message : String(error) });
    return undefined;
  });
  if (!restored) {
    const main = await repository.resolve(DEPLOY_REF);
    const progress = (line: string) => log.info(`deploy: ${line}`);
    if (main) {
      // main moved but was never activated (fnix stopped between the two): deploy it now.
      const held = await deployer.lock.acquire('the deployment of main at start', 60_000);
      try {
        // The first import's commit is checked as an import again: its broken functions do not stop the rest.
        const imported = (await deployer.store.list()).some((r) => r.commit === main && r.source === 'import');
        const { record } = await deployer.check(main, { progress, source: imported ? 'import' : 'push' });
        if (record.result === 'ready') await deployer.activate(record.id);
        else for (const line of (record.reason ?? '').split('\n')) log.error(`deploy: ${line}`);
      } finally {
        held.release();
      }
    } else if (options.functionsDir) {
      const { record } = await deployer.importFolder(options.functionsDir, progress);
      if (record.result === 'refused') {
        log.error(`the functions folder ${options.functionsDir} was not deployed; fix it and restart, or push a fix`, { deployment: record.id });
        for (const line of (record.reason ?? '').split('\n')) log.error(`deploy: ${line}`);
      }
    }
  }
  return {
    deployer,
    pushes,
    repository,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of hooks) socket.destroy();
      }),
  };
}

/**
 * The runtime's `cleanStateDir` for deployments: removes what a dead push or build left in the state
 * folder (before anything else is written there, so that a full disk does not stop the start), and says so.
 */
export function cleanDeployLeftovers(stateDir: string, log: Logger): () => Promise<void> {
  return async () => {
    const { paths, bytes } = await removeDeployLeftovers(stateDir);
    if (paths.length > 0) log.info('removed what an interrupted push or build left', { count: paths.length, mib: (bytes / 2 ** 20).toFixed(1) });
  };
}

/** A shell word for `value`. */
function quote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}
