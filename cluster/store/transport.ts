/**
 * @module
 * How the store reaches the nodes, behind one interface (docs/cluster.md): the builder publishes a
 * deployment's closures, and every node takes them into its own /nix/store before it activates the
 * deployment. shared.ts: the builder copies them into the export that every node mounts read-only
 * under its overlay. cache.ts: the builder signs them into a binary cache that every node substitutes from.
 * Either way, containers keep `-v /nix/store:/nix/store:O` on each node's own store.
 */
import { execa } from 'execa';
import { FnixError } from '../../runtime/errors.ts';

/** What the builder published for a deployment, kept with it in etcd for the nodes. */
export interface Publication {
  /** Shared mode: the Nix database rows of the closure (`nix-store --dump-db`), which the nodes load. */
  registration?: string | undefined;
}

/** Where a node takes a deployment's closure from. */
export interface TakeSource {
  /** The builder's URL (cache mode: its binary cache is `<url>/cluster/cache`). */
  builderUrl: string | undefined;
  /** The node that made the deployment live (cache mode: its cache is asked too, after the builder's). */
  publisherUrl?: string | undefined;
  publication: Publication;
}

/** What taking a closure did, for the log and the acknowledgement. */
export interface Taken {
  /** Store paths that were not valid on this node before. */
  added: number;
  /** Whether the overlay had to be refreshed (shared mode's cached negative lookups). */
  refreshed: boolean;
  ms: number;
}

/** One way for the store to reach the nodes. */
export interface StoreTransport {
  readonly mode: 'shared' | 'cache';
  /** On the builder: makes `closure` reachable to every node. */
  publish(closure: readonly string[]): Promise<Publication>;
  /** On a node: makes `closure` valid in this node's /nix/store. Throws STORE_UNAVAILABLE naming what is missing. */
  take(closure: readonly string[], source: TakeSource): Promise<Taken>;
}

/** The paths of `closure` that this node's Nix database does not hold valid. */
export async function invalidPaths(closure: readonly string[]): Promise<string[]> {
  if (closure.length === 0) return [];
  const result = await execa('nix-store', ['--check-validity', '--print-invalid', ...closure], { reject: false, timeout: 60_000, stdin: 'ignore' });
  if (result.exitCode !== 0) {
    throw new FnixError('STORE_UNAVAILABLE', `nix-store --check-validity failed: ${String(result.stderr).trim().split('\n').at(-1) ?? ''}`);
  }
  return String(result.stdout)
    .split('\n')
    .filter((line) => line !== '');
}

/** The closure (every requisite) of `paths` in this node's store, sorted. */
export async function closureOf(paths: readonly string[]): Promise<string[]> {
  if (paths.length === 0) return [];
  const result = await execa('nix-store', ['--query', '--requisites', ...new Set(paths)], { timeout: 60_000, stdin: 'ignore' });
  return String(result.stdout)
    .split('\n')
    .filter((line) => line !== '')
    .sort();
}
