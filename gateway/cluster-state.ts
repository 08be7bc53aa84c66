/**
 * @module
 * The state a cluster's nodes share through etcd, behind the interfaces one host already has: the
 * secrets (a SecretStore, cluster/state/secret-store.ts) and the invoke keys (a KeyStore,
 * auth/keys/etcd-store.ts, here in gateway/ because keys are the gateway's: cluster/ does not import
 * gateway/). Opened once per node, before the runtime starts, with the cluster's etcd client.
 */
import type { Etcd3 } from 'etcd3';
import type { ClusterKeys } from '../cluster/keys.ts';
import { EtcdSecretStore } from '../cluster/state/secret-store.ts';
import type { Logger } from '../runtime/log.ts';
import { EtcdKeyStore } from './auth/keys/etcd-store.ts';

/** Options of {@link openClusterState}. */
export interface ClusterStateOptions {
  /**
   * The node's etcd client. Give it `faultHandling: { watchBackoff: watchBackoff() }` (cluster/state/mirror.ts):
   * etcd3's own backoff lets a watch wait up to 30 s to reconnect after etcd is back.
   */
  client: Etcd3;
  keys: ClusterKeys;
  /** FNIX_SECRETS_KEY, decoded: required in cluster mode, the same on every node. */
  secretsKey: Buffer;
  log: Logger;
  /** How often the invoke keys' last uses are written. @default 60000 */
  keysFlushMs?: number | undefined;
  /** The mirrors' timings: `checkMs` (default 2000) bounds how late a change can be when a watch is down; `timeoutMs` (5000) each call. */
  mirror?: { checkMs?: number | undefined; timeoutMs?: number | undefined } | undefined;
}

/** A node's view of the shared state. */
export interface ClusterState {
  secrets: EtcdSecretStore;
  invokeKeys: EtcdKeyStore;
  /**
   * When both mirrors were last known to hold what etcd holds (the older of the two); undefined
   * before. Within `checkMs` (2 s) of now while etcd answers: older says this node's secrets and keys
   * may be behind the cluster's.
   */
  lastSyncAt(): Date | undefined;
  /** Writes the keys' last uses and stops watching (both stores' close; each may be closed alone before). */
  close(): Promise<void>;
}

/**
 * Opens the cluster's secrets and invoke keys. Throws SECRETS_KEY_INVALID when `secretsKey` is not
 * the cluster's, CLUSTER_UNAVAILABLE when etcd does not answer.
 *
 * How it is wired (gateway/assemble.ts, in cluster mode, the state opened before startRuntime so
 * that a wrong key stops the start before any container):
 * - the secrets replace `FileSecretStore.open`: `startRuntime({ ..., openSecrets: async () => state.secrets })`;
 * - the invoke keys replace `FileKeyStore.open({ stateDir })` in startGateway: `state.invokeKeys` is
 *   what `keys` is there (KeyGuard's `keys`, createApp's `access.keys`, and the `keys.close()` of
 *   the gateway's close, which writes the last uses);
 * - `state.close()` after the runtime is closed, before the etcd client is.
 */
export async function openClusterState(options: ClusterStateOptions): Promise<ClusterState> {
  const { client, keys, log, mirror } = options;
  const secrets = await EtcdSecretStore.open({ client, keys, key: options.secretsKey, log, mirror });
  let invokeKeys: EtcdKeyStore;
  try {
    invokeKeys = await EtcdKeyStore.open({ client, keys, log, flushMs: options.keysFlushMs, mirror });
  } catch (error) {
    await secrets.close();
    throw error;
  }
  return {
    secrets,
    invokeKeys,
    lastSyncAt() {
      const a = secrets.lastSyncAt();
      const b = invokeKeys.lastSyncAt();
      return a && b ? new Date(Math.min(a.getTime(), b.getTime())) : undefined;
    },
    async close() {
      try {
        await invokeKeys.close();
      } finally {
        await secrets.close();
      }
    },
  };
}
