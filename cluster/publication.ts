/**
 * @module
 * A deployment's publication, kept in etcd beside its record (`registrations/<id>`): the closure of its
 * functions' store paths, and what the store transport needs to take it (shared mode: the Nix database
 * rows). Written by the builder before the deployment goes live; read by every node that activates it.
 */
import type { Etcd3 } from 'etcd3';
import type { FunctionVersion } from '../runtime/functions/version.ts';
import { withDeadline } from './etcd.ts';
import type { ClusterKeys } from './keys.ts';
import type { Publication } from './store/transport.ts';

/** What `registrations/<id>` holds. */
export interface StoredPublication extends Publication {
  closure: string[];
}

/** etcd refuses requests above 1.5 MiB by default; a closure's registration is far below (about 300 bytes a path). */
const MAX_BYTES = 1_400_000;

/** Every store path the versions' functions run with, sorted. */
export function closureOfVersions(versions: readonly FunctionVersion[]): string[] {
  return [...new Set(versions.flatMap((version) => version.resolution.closure))].sort();
}

export async function savePublication(client: Etcd3, keys: ClusterKeys, id: string, publication: StoredPublication): Promise<void> {
  const text = JSON.stringify(publication);
  if (Buffer.byteLength(text) > MAX_BYTES) {
    throw new Error(
      `the publication of ${id} is ${Buffer.byteLength(text)} bytes, more than etcd takes in one request (${MAX_BYTES}); fewer or smaller closures would fit`,
    );
  }
  await withDeadline('saving a publication', client.put(keys.registration(id)).value(text).exec());
}

export async function readPublication(client: Etcd3, keys: ClusterKeys, id: string): Promise<StoredPublication | undefined> {
  const text = await withDeadline('reading a publication', client.get(keys.registration(id)).string());
  return text === null ? undefined : (JSON.parse(text) as StoredPublication);
}
