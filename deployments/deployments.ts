/**
 * @module
 * Deployments, put together for a running runtime: the repository and its hooks, the records, the
 * hook socket, and what is served at start (start.ts). What the gateway calls is here: the end of a
 * push's request (the git endpoint), the history and a rollback (the admin API).
 */
import { mkdir } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FunctionRegistry } from '../runtime/functions/registry.ts';
import type { Logger } from '../runtime/log.ts';
import type { PackageResolver } from '../runtime/nix/resolve.ts';
import type { Pool } from '../runtime/pool/pool.ts';
import type { Runner } from '../runtime/runner.ts';
import type { ServeInstances } from '../runtime/serve/instances.ts';
import { activateDeployment } from './activate.ts';
import { type DeployContext, type DeploymentOutcome, type GoLive, PreparedDeployments } from './context.ts';
import { startHookServer } from './hooks/socket.ts';
import { deployLayout } from './layout.ts';
import { removeDeployLeftovers } from './leftovers.ts';
import { DeployLock } from './lock.ts';
import { PushDeploys } from './push.ts';
import { type DeploymentRecord, DeploymentStore } from './records.ts';
import { Repository } from './repository.ts';
import { rollback } from './rollback.ts';
import { serveAtStart } from './start.ts';

/** Options of {@link startDeployments}. */
export interface DeploymentsOptions {
  /** What deployments build, start and serve through. */
  runtime: { resolver: PackageResolver; runner: Runner; registry: FunctionRegistry; pool: Pool; instances: ServeInstances };
  stateDir: string;
  /** Imported as the first deployment when the repository is empty. */
  functionsDir?: string | undefined;
  /** receive.maxInputSize: the largest pack a push may send. */
  maxPushBytes: number;
  log: Logger;
  /** Told how each deployment went (the metrics). */
  onDeployment?: ((outcome: DeploymentOutcome, durationMs: number) => void) | undefined;
  /**
   * The names of the secrets set now (the gateway's store): a push or rollback whose function declares
   * another is refused. Passed in, so that deployments know nothing of where secrets are kept.
   * @default none is set
   */
  secretNames?: (() => ReadonlySet<string>) | undefined;
  /**
   * Holds secrets from removal (the store refuses to remove them) until the returned function is
   * called: an activation holds those its functions declare from its check to its switch.
   * @default nothing is held
   */
  holdSecrets?: ((names: Iterable<string>) => () => void) | undefined;
  /** How a push or a rollback goes live (a cluster's: cluster/). @default activation on this host alone */
  goLive?: GoLive | undefined;
  /** Why this node takes no push now (a cluster node that is not the builder). @default it always does */
  refusePush?: (() => string | undefined) | undefined;
  /** How long a push waits for another one. @default 120000 */
  pushWaitMs?: number | undefined;
  /**
   * FNIX_HISTORY: the newest deployments kept, besides the active one and the one it replaced; older
   * ones go, with their builds and GC roots (history.ts). At least 1. @default 50
   */
  historyLimit?: number | undefined;
}

/** Deployments, started. */
export interface Deployments {
  /** The records: the history, and which is active. Read them; operations write them. */
  records: DeploymentStore;
  repository: Repository;
  /** The request of push `pushId` is over (the git endpoint says so: only it sees http-backend exit). */
  pushEnded(pushId: string): Promise<void>;
  /** Activates an earlier deployment again (rollback.ts). */
  rollback(id: string): Promise<DeploymentRecord>;
  /**
   * Activates deployment `id` here, its record already saved (a cluster node following the live deployment,
   * cluster/follower.ts): false when it is active already. Waits for a push or rollback under way.
   */
  activateHere(id: string, options?: { force?: boolean; stillWanted?: () => boolean }): Promise<boolean>;
  close(): Promise<void>;
}

const HOOK_SCRIPT = fileURLToPath(new URL('./hooks/hook.mjs', import.meta.url));
const DEFAULT_HISTORY_LIMIT = 50;
/** How long a cluster node's activation waits for a push or rollback under way here. */
const FOLLOW_WAIT_MS = 15 * 60_000;

/** Starts deployments and serves what should be served (start.ts). */
export async function startDeployments(options: DeploymentsOptions): Promise<Deployments> {
  const { stateDir, log } = options;
  const historyLimit = options.historyLimit ?? DEFAULT_HISTORY_LIMIT;
  if (!Number.isSafeInteger(historyLimit) || historyLimit < 1) throw new TypeError(`historyLimit must be an integer of at least 1, not ${historyLimit}`);
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
  const ctx: DeployContext = {
    ...options.runtime,
    repository,
    store,
    buildsDir,
    stagingDir,
    log,
    lock: new DeployLock(),
    historyLimit,
    prepared: new PreparedDeployments(),
    onDeployment: options.onDeployment ?? (() => {}),
    secretNames: options.secretNames ?? (() => new Set()),
    holdSecrets: options.holdSecrets ?? (() => () => {}),
    goLive: options.goLive ?? ((_deployment, activate) => activate()),
    refusePush: options.refusePush ?? (() => undefined),
  };
  const pushes = new PushDeploys(ctx, {
    waitMs: options.pushWaitMs,
    onError: (error) => log.error('a push left pending could not be settled', { error: String(error) }),
  });
  const server = await startHookServer(socketPath, repository.gitDir, pushes, log);
  // Hooks under way at shutdown are cut (their push is refused), so that a long build cannot hold it up.
  const hooks = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    hooks.add(socket);
    socket.once('close', () => hooks.delete(socket));
  });
  await serveAtStart(ctx, options.functionsDir);
  return {
    records: store,
    repository,
    pushEnded: (pushId) => pushes.pushEnded(pushId),
    rollback: (id) => rollback(ctx, id),
    // `force`: activated again even when it is the current one (a restore at start may have held functions
    // broken that build now). `stillWanted`: checked once the lock is held, so that an activation that waited
    // behind a push is dropped when the push moved on.
    activateHere: (id, { force = false, stillWanted = () => true } = {}) =>
      ctx.lock.with(`the activation of ${id}`, FOLLOW_WAIT_MS, async (held) => {
        if (!stillWanted()) return false;
        if (!force && (await store.current()) === id) return false;
        await activateDeployment(ctx, held, id);
        return true;
      }),
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
