/**
 * @module
 * A node's cluster settings, read from the environment with the gateway's (gateway/config.ts calls
 * {@link readClusterSettings}). Cluster mode is on when FNIX_CLUSTER_ETCD is set; every other variable
 * here is then checked, and an error names the variable and the fix (docs/cluster.md has the table).
 */
import { hostname } from 'node:os';

/** How the store reaches the nodes (docs/cluster.md): the builder's export mounted, or its binary cache. */
export type StoreMode = 'shared' | 'cache';

/** What a node cut off from etcd says on /healthz. */
export type StalePolicy = 'serve' | 'unhealthy';

/** A node's cluster settings. */
export interface ClusterSettings {
  /** FNIX_CLUSTER_ETCD: etcd client URLs. */
  etcd: string[];
  /** FNIX_CLUSTER_NAME: the key prefix `/fnix/<name>/`. @default 'fnix' */
  name: string;
  /** FNIX_NODE_NAME. @default the host name */
  node: string;
  /** FNIX_NODE_URL: where the other nodes and the load balancer reach this one. */
  nodeUrl: string;
  /** FNIX_BUILDER: whether this node stands in the builder election. @default true */
  builderEligible: boolean;
  /** FNIX_STORE_MODE. @default 'shared' */
  storeMode: StoreMode;
  /** FNIX_STORE_EXPORT (shared mode, builders): the read-write mount of the store the nodes mount read-only. */
  storeExport: string | undefined;
  /** FNIX_CACHE_SECRET_KEY_FILE (cache mode, builders): the key the binary cache is signed with. */
  cacheSecretKeyFile: string | undefined;
  /** FNIX_CACHE_PUBLIC_KEY (cache mode): the key every node checks the cache's signatures with. */
  cachePublicKey: string | undefined;
  /** FNIX_CLUSTER_ACK_TIMEOUT: how long a push waits for every node to serve it. @default 60 s */
  ackTimeoutMs: number;
  /** FNIX_CLUSTER_LEASE_TTL: seconds a node's membership outlives its last word to etcd. @default 5 */
  leaseTtlSeconds: number;
  /** FNIX_CLUSTER_STALE. @default 'serve' */
  stale: StalePolicy;
}

/** A cluster variable with a bad value. */
export class ClusterSettingsError extends Error {
  override name = 'ClusterSettingsError';
}

type Env = Readonly<Record<string, string | undefined>>;

const NODE_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const PUBLIC_KEY = /^[A-Za-z0-9._-]+:[A-Za-z0-9+/]{43}=$/;

/** The cluster settings in `env`; undefined when FNIX_CLUSTER_ETCD is unset (one host). */
export function readClusterSettings(env: Env): ClusterSettings | undefined {
  const endpoints = (env['FNIX_CLUSTER_ETCD'] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (endpoints.length === 0) {
    for (const name of ['FNIX_NODE_URL', 'FNIX_STORE_MODE', 'FNIX_STORE_EXPORT']) {
      if (env[name])
        throw new ClusterSettingsError(`${name} is set but FNIX_CLUSTER_ETCD is not: set FNIX_CLUSTER_ETCD to the etcd client URLs, or unset ${name}`);
    }
    return undefined;
  }
  for (const url of endpoints) {
    if (!/^https?:\/\/[^/\s]+\/?$/.test(url)) {
      throw new ClusterSettingsError(
        `FNIX_CLUSTER_ETCD has ${JSON.stringify(url)}: expected etcd client URLs such as http://10.0.0.5:2379, separated by commas`,
      );
    }
  }
  const name = env['FNIX_CLUSTER_NAME'] || 'fnix';
  if (!NODE_NAME.test(name)) throw new ClusterSettingsError(`FNIX_CLUSTER_NAME=${JSON.stringify(name)}: use lowercase letters, digits and dashes`);
  const node = (env['FNIX_NODE_NAME'] || hostname()).toLowerCase();
  if (!NODE_NAME.test(node)) {
    throw new ClusterSettingsError(`FNIX_NODE_NAME=${JSON.stringify(node)}: a node's name is lowercase letters, digits and dashes (at most 63)`);
  }
  const nodeUrl = (env['FNIX_NODE_URL'] ?? '').replace(/\/+$/, '');
  if (!/^https?:\/\/[^/\s]+$/.test(nodeUrl)) {
    throw new ClusterSettingsError(
      `FNIX_NODE_URL=${JSON.stringify(env['FNIX_NODE_URL'] ?? '')}: in a cluster every node needs the URL the others reach it at, such as http://10.0.0.2:8080`,
    );
  }
  const storeMode = (env['FNIX_STORE_MODE'] || 'shared') as StoreMode;
  if (storeMode !== 'shared' && storeMode !== 'cache') {
    throw new ClusterSettingsError(
      `FNIX_STORE_MODE=${JSON.stringify(storeMode)}: expected shared (a network mount of the store) or cache (a signed binary cache)`,
    );
  }
  const builderEligible = readBoolean(env, 'FNIX_BUILDER', true);
  const storeExport = env['FNIX_STORE_EXPORT'] || undefined;
  if (storeMode === 'shared' && builderEligible && !storeExport) {
    throw new ClusterSettingsError(
      'FNIX_STORE_EXPORT is unset: a node that may become the builder in shared store mode needs the read-write mount of the store export (or set FNIX_BUILDER=false)',
    );
  }
  const cacheSecretKeyFile = env['FNIX_CACHE_SECRET_KEY_FILE'] || undefined;
  const cachePublicKey = env['FNIX_CACHE_PUBLIC_KEY'] || undefined;
  if (storeMode === 'cache') {
    if (!cachePublicKey || !PUBLIC_KEY.test(cachePublicKey)) {
      throw new ClusterSettingsError(
        'FNIX_CACHE_PUBLIC_KEY is unset or not a Nix public key (name:base64): in cache store mode every node checks the cache with it; make a pair with nix-store --generate-binary-cache-key',
      );
    }
    if (builderEligible && !cacheSecretKeyFile) {
      throw new ClusterSettingsError(
        'FNIX_CACHE_SECRET_KEY_FILE is unset: a node that may become the builder signs the binary cache with it (or set FNIX_BUILDER=false)',
      );
    }
  }
  const stale = (env['FNIX_CLUSTER_STALE'] || 'serve') as StalePolicy;
  if (stale !== 'serve' && stale !== 'unhealthy') {
    throw new ClusterSettingsError(
      `FNIX_CLUSTER_STALE=${JSON.stringify(stale)}: expected serve (the default: /healthz says stale, answers 200) or unhealthy (503)`,
    );
  }
  return {
    etcd: endpoints.map((url) => url.replace(/\/+$/, '')),
    name,
    node,
    nodeUrl,
    builderEligible,
    storeMode,
    storeExport,
    cacheSecretKeyFile,
    cachePublicKey,
    ackTimeoutMs: readSeconds(env, 'FNIX_CLUSTER_ACK_TIMEOUT', 60, 1, 3600) * 1000,
    leaseTtlSeconds: readSeconds(env, 'FNIX_CLUSTER_LEASE_TTL', 5, 2, 300),
    stale,
  };
}

function readBoolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new ClusterSettingsError(`${name}=${JSON.stringify(env[name])}: expected true or false`);
}

/** Seconds, written `30`, `30s` or `2m`. */
function readSeconds(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return fallback;
  const match = /^(\d+)(s|m)?$/.exec(raw);
  const value = match ? Number(match[1]) * (match[2] === 'm' ? 60 : 1) : Number.NaN;
  if (!(value >= min && value <= max))
    throw new ClusterSettingsError(`${name}=${JSON.stringify(raw)}: expected a duration from ${min}s to ${max}s, such as 60s or 2m`);
  return value;
}
