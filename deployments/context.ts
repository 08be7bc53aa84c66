/**
 * @module
 * What every deployment operation works with: the repository and the records, the parts of the
 * runtime a deployment builds, starts and serves through, the lock, and the built versions kept
 * between a check and its activation. deployments.ts makes one; the operations take it.
 */
import type { FnixError } from '../runtime/errors.ts';
import type { FunctionRegistry } from '../runtime/functions/registry.ts';
import type { FunctionVersion } from '../runtime/functions/version.ts';
import type { Logger } from '../runtime/log.ts';
import type { PackageResolver } from '../runtime/nix/resolve.ts';
import type { Pool } from '../runtime/pool/pool.ts';
import type { Runner } from '../runtime/runner.ts';
import type { ServeInstances } from '../runtime/serve/instances.ts';
import type { DeployLock } from './lock.ts';
import type { DeploymentRecord, DeploymentStore } from './records.ts';
import type { Repository } from './repository.ts';

/** Told each line of a deployment's progress (a push shows them as `remote:` lines). */
export type Progress = (line: string) => void;

/**
 * Makes a checked deployment live: on one host, `activate()` alone (the default); in a cluster
 * (cluster/), the store published, the cluster's live key changed, `activate()` here, and every node's
 * acknowledgement awaited, told through `progress`. `versions`: what the push built, when it built it.
 */
export type GoLive = (
  deployment: { id: string; versions: readonly FunctionVersion[] | undefined },
  activate: () => Promise<DeploymentRecord>,
  progress: Progress,
) => Promise<DeploymentRecord>;

/** How a deployment ended, for the metrics: `partial` is the first import, served with broken functions. */
export type DeploymentOutcome = 'activated' | 'partial' | 'refused';

/** The deployments' shared state. */
export interface DeployContext {
  repository: Repository;
  store: DeploymentStore;
  resolver: PackageResolver;
  runner: Runner;
  registry: FunctionRegistry;
  pool: Pool;
  /** Serve functions' instances: a check starts one, an activation warms the new ones and drains the old. */
  instances: ServeInstances;
  /** `<state>/builds`, where function builds are kept. */
  buildsDir: string;
  /** Where a commit's files are written while it is checked. */
  stagingDir: string;
  log: Logger;
  lock: DeployLock;
  /** Deployments kept besides the active one and the one it replaced; older ones go, with their builds and GC roots (history.ts). */
  historyLimit: number;
  prepared: PreparedDeployments;
  /** Told how each deployment went, for the metrics. */
  onDeployment: (outcome: DeploymentOutcome, durationMs: number) => void;
  /** The names of the secrets set now: a deployment whose function declares another is refused (check.ts). */
  secretNames: () => ReadonlySet<string>;
  /** Holds secrets from removal while a deployment declaring them is activated; returns the release (activate.ts). */
  holdSecrets: (names: Iterable<string>) => () => void;
  /** How a push or a rollback goes live (see {@link GoLive}). */
  goLive: GoLive;
  /** Why this node takes no push now (a cluster node that is not the builder), or undefined when it does. */
  refusePush: () => string | undefined;
}

/** What activating a deployment serves: its built versions, and the functions it holds broken. */
export interface Prepared {
  versions: FunctionVersion[];
  broken: Map<string, FnixError>;
}

/** Built versions kept in memory for activation; older deployments are rebuilt (from cache) when activated. */
const PREPARED_KEPT = 4;

/** The latest checked deployments' built versions, and how long each check took (counted into its activation). */
export class PreparedDeployments {
  readonly #prepared = new Map<string, Prepared>();
  readonly #checkMs = new Map<string, number>();

  get(id: string): Prepared | undefined {
    return this.#prepared.get(id);
  }

  /** Keeps what deployment `id` serves; `checkMs`, for a check just made. */
  set(id: string, prepared: Prepared, checkMs?: number): void {
    this.#prepared.set(id, prepared);
    if (checkMs !== undefined) this.#checkMs.set(id, checkMs);
    for (const old of [...this.#prepared.keys()].slice(0, -PREPARED_KEPT)) this.forget(old);
  }

  /** How long deployment `id`'s check took, once: its activation counts it, and only the first. */
  takeCheckMs(id: string): number {
    const ms = this.#checkMs.get(id) ?? 0;
    this.#checkMs.delete(id);
    return ms;
  }

  forget(id: string): void {
    this.#prepared.delete(id);
    this.#checkMs.delete(id);
  }
}
