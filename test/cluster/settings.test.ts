import { describe, expect, it } from 'vitest';
import { ClusterSettingsError, readClusterSettings } from '../../cluster/settings.ts';

const base = {
  FNIX_CLUSTER_ETCD: 'http://10.0.0.5:2379, http://10.0.0.6:2379/',
  FNIX_NODE_NAME: 'n1',
  FNIX_NODE_URL: 'http://10.0.0.2:8080/',
  FNIX_STORE_EXPORT: '/mnt/fnix-store',
};

describe('readClusterSettings', () => {
  it('is off without FNIX_CLUSTER_ETCD, and refuses cluster variables without it', () => {
    expect(readClusterSettings({})).toBeUndefined();
    expect(() => readClusterSettings({ FNIX_NODE_URL: 'http://x:1' })).toThrow(/FNIX_CLUSTER_ETCD is not/);
  });

  it('reads a shared-store builder with its defaults', () => {
    expect(readClusterSettings(base)).toEqual({
      etcd: ['http://10.0.0.5:2379', 'http://10.0.0.6:2379'],
      name: 'fnix',
      node: 'n1',
      nodeUrl: 'http://10.0.0.2:8080',
      builderEligible: true,
      storeMode: 'shared',
      storeExport: '/mnt/fnix-store',
      cacheSecretKeyFile: undefined,
      cachePublicKey: undefined,
      ackTimeoutMs: 60_000,
      leaseTtlSeconds: 5,
      stale: 'serve',
    });
  });

  it('names the variable and the fix for each mistake', () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ FNIX_CLUSTER_ETCD: '10.0.0.5:2379' }, /FNIX_CLUSTER_ETCD has "10.0.0.5:2379"/],
      [{ FNIX_NODE_NAME: 'Node_1' }, /FNIX_NODE_NAME="node_1"/],
      [{ FNIX_NODE_URL: '' }, /FNIX_NODE_URL="": in a cluster every node needs the URL/],
      [{ FNIX_STORE_MODE: 'nfs' }, /FNIX_STORE_MODE="nfs": expected shared .* or cache/],
      [{ FNIX_STORE_EXPORT: '' }, /FNIX_STORE_EXPORT is unset: .*or set FNIX_BUILDER=false/],
      [{ FNIX_STORE_MODE: 'cache' }, /FNIX_CACHE_PUBLIC_KEY is unset or not a Nix public key/],
      [{ FNIX_BUILDER: 'maybe' }, /FNIX_BUILDER="maybe": expected true or false/],
      [{ FNIX_CLUSTER_STALE: 'drop' }, /FNIX_CLUSTER_STALE="drop"/],
      [{ FNIX_CLUSTER_ACK_TIMEOUT: '0' }, /FNIX_CLUSTER_ACK_TIMEOUT="0": expected a duration/],
    ];
    for (const [change, message] of cases) {
      expect(() => readClusterSettings({ ...base, ...change }), JSON.stringify(change)).toThrow(ClusterSettingsError);
      expect(() => readClusterSettings({ ...base, ...change }), JSON.stringify(change)).toThrow(message);
    }
  });

  it('lets a node that does not build go without an export or a signing key', () => {
    expect(readClusterSettings({ ...base, FNIX_STORE_EXPORT: '', FNIX_BUILDER: 'false' })?.builderEligible).toBe(false);
    const key = `fnix-1:${'A'.repeat(43)}=`;
    const cache = readClusterSettings({ ...base, FNIX_STORE_MODE: 'cache', FNIX_BUILDER: 'false', FNIX_CACHE_PUBLIC_KEY: key });
    expect(cache).toMatchObject({ storeMode: 'cache', cachePublicKey: key, cacheSecretKeyFile: undefined });
    expect(() => readClusterSettings({ ...base, FNIX_STORE_MODE: 'cache', FNIX_CACHE_PUBLIC_KEY: key })).toThrow(/FNIX_CACHE_SECRET_KEY_FILE is unset/);
    expect(readClusterSettings({ ...base, FNIX_CLUSTER_ACK_TIMEOUT: '2m', FNIX_CLUSTER_LEASE_TTL: '10s' })).toMatchObject({
      ackTimeoutMs: 120_000,
      leaseTtlSeconds: 10,
    });
  });
});
