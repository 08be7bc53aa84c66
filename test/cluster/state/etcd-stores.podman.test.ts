/**
 * @module
 * The cluster's secrets and invoke keys against a real etcd (one member, on loopback): two stores on
 * one etcd stand for two nodes, each with its own client. What one node changes, the other sees
 * within the bound (measured, and printed); a wrong key stops a node at start; a value is sealed in
 * etcd; a revoke ends what the key holds open on the other node; a node whose etcd was killed keeps
 * its values and picks up a change made once etcd is back.
 */
import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectEtcd } from '../../../cluster/etcd.ts';
import { type ClusterKeys, clusterKeys } from '../../../cluster/keys.ts';
import { watchBackoff } from '../../../cluster/state/mirror.ts';
import { EtcdSecretStore, KEY_CHECK_NAME } from '../../../cluster/state/secret-store.ts';
import { FailureLimiter } from '../../../gateway/auth/failure-limiter.ts';
import { EtcdKeyStore } from '../../../gateway/auth/keys/etcd-store.ts';
import { KeyGuard } from '../../../gateway/auth/keys/guard.ts';
import { parseKeyText } from '../../../gateway/auth/keys/key-text.ts';
import { openClusterState } from '../../../gateway/cluster-state.ts';
import { FnixError } from '../../../runtime/errors.ts';
import { createLogger, type Logger } from '../../../runtime/log.ts';
import { sealValue } from '../../../runtime/secrets/cipher.ts';
import { SecretRotation } from '../../../runtime/secrets/rotation.ts';
import type { SecretChange } from '../../../runtime/secrets/store.ts';
import { waitUntil } from '../../helpers/processes.ts';
import { type LocalEtcd, startEtcd } from '../../helpers/etcd.ts';

/** The bound the docs state: a change on one node is seen on every other within this. */
const BOUND_MS = 2000;
const TEST_MS = 60_000;

let etcd: LocalEtcd;
const clients: Etcd3[] = [];
const closers: (() => Promise<void>)[] = [];
let clusters = 0;

beforeAll(async () => {
  etcd = await startEtcd();
}, 30_000);

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
  for (const client of clients) client.close();
  await etcd?.stop();
});

/**
 * A client as a node has one: `lead` is the one cluster/etcd.ts makes (etcd3's own watch backoff),
 * `fast` reconnects its watches within 2 s (mirror.ts's watchBackoff), `stuck` waits 30 s to.
 */
function client(kind: 'lead' | 'fast' | 'stuck' = 'fast'): Etcd3 {
  const stuck = { duration: 30_000, next: () => stuck };
  const made =
    kind === 'lead'
      ? connectEtcd([etcd.url])
      : new Etcd3({ hosts: etcd.url, dialTimeout: 2000, faultHandling: { watchBackoff: kind === 'fast' ? watchBackoff() : stuck } });
  clients.push(made);
  return made;
}

/** A logger whose lines the test reads. */
function logger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const log = createLogger({ stream: { write: (text: string) => lines.push(...text.split('\n').filter(Boolean)) } });
  return Object.assign(log, { lines });
}

/** A fresh cluster name, so that each test has a prefix of its own. */
function cluster(): ClusterKeys {
  return clusterKeys(`t${++clusters}-${process.pid}`);
}

async function openSecrets(keys: ClusterKeys, key: Buffer, options: { log?: Logger; etcd?: Etcd3; timeoutMs?: number } = {}): Promise<EtcdSecretStore> {
  const store = await EtcdSecretStore.open({
    client: options.etcd ?? client(),
    keys,
    key,
    log: options.log ?? logger(),
    mirror: { timeoutMs: options.timeoutMs },
  });
  closers.push(() => store.close());
  return store;
}

async function openKeys(keys: ClusterKeys, options: { log?: Logger; flushMs?: number } = {}): Promise<EtcdKeyStore> {
  const store = await EtcdKeyStore.open({ client: client(), keys, log: options.log ?? logger(), flushMs: options.flushMs });
  closers.push(() => store.close());
  return store;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function report(what: string, values: number[]): void {
  console.log(`${what}: median ${median(values).toFixed(1)} ms, max ${Math.max(...values).toFixed(1)} ms over ${values.length}`);
}

describe('the cluster secret store', () => {
  it(
    'a secret set on one node is read on the other within the bound, and fires its onChange there',
    async () => {
      const keys = cluster();
      const key = randomBytes(32);
      const a = await openSecrets(keys, key);
      const b = await openSecrets(keys, key);
      const seenOnB: SecretChange[] = [];
      let changedOnB = 0;
      b.onChange((change) => {
        seenOnB.push(change);
        changedOnB = performance.now();
      });
      const delays: number[] = [];
      for (let round = 0; round < 20; round++) {
        const value = `value-${round}-${randomBytes(8).toString('hex')}`;
        const start = performance.now();
        await a.set('API_KEY', Buffer.from(value));
        // Read-your-writes on the node that set it: in its mirror once set resolves.
        expect(a.value('API_KEY')?.toString()).toBe(value);
        await waitUntil(() => b.value('API_KEY')?.toString() === value, BOUND_MS, 'node B to read the new value');
        // From the call on A to B's onChange, which fires as B's mirror takes the value.
        delays.push(changedOnB - start);
        expect(changedOnB - start).toBeLessThan(BOUND_MS);
      }
      report('secret set on A (call) -> onChange on B', delays);
      expect(seenOnB).toHaveLength(20);
      expect(seenOnB.every((change) => change.name === 'API_KEY' && change.kind === 'set')).toBe(true);
      expect(b.list().map((secret) => secret.name)).toEqual(['API_KEY']);
      expect(b.has('API_KEY')).toBe(true);
    },
    TEST_MS,
  );

  it(
    "a secret removed on one node is gone on the other, whose onChange says so; a set there restarts that node's serve functions",
    async () => {
      const keys = cluster();
      const key = randomBytes(32);
      const a = await openSecrets(keys, key);
      const b = await openSecrets(keys, key);
      // The rotation every node runs (runtime/secrets/rotation.ts), fed by A's store: B's changes restart A's instances.
      const restarts: string[][] = [];
      const rotation = new SecretRotation({
        store: a,
        registry: { versions: () => [{ name: 'svc', manifest: { serve: { port: 8080 }, secrets: ['DB_PASSWORD'] } }] as never },
        instances: {
          restart: async (functions: string[]) => {
            restarts.push(functions);
            return functions;
          },
        },
        log: logger(),
      });
      const seenOnA: SecretChange[] = [];
      a.onChange((change) => seenOnA.push(change));
      await b.set('DB_PASSWORD', Buffer.from('hunter2'));
      await waitUntil(() => a.has('DB_PASSWORD'), BOUND_MS, 'A to have the secret');
      expect(restarts).toEqual([['svc']]);
      const start = performance.now();
      expect(await b.remove('DB_PASSWORD')).toBe(true);
      const delay = await waitUntil(() => !a.has('DB_PASSWORD') && a.value('DB_PASSWORD') === undefined, BOUND_MS, 'A to lose the secret');
      console.log(`secret removed on B -> gone on A: ${(performance.now() - start).toFixed(1)} ms (after remove resolved: ${delay.toFixed(1)} ms)`);
      expect(seenOnA).toEqual([
        { name: 'DB_PASSWORD', kind: 'set' },
        { name: 'DB_PASSWORD', kind: 'removed' },
      ]);
      expect(a.list()).toEqual([]);
      expect(await a.remove('DB_PASSWORD')).toBe(false);
      rotation.close();
    },
    TEST_MS,
  );

  it(
    'keeps only ciphertext in etcd, sealed to the name',
    async () => {
      const keys = cluster();
      const store = await openSecrets(keys, randomBytes(32));
      const value = `sk_live_${randomBytes(16).toString('hex')}`;
      await store.set('STRIPE_KEY', Buffer.from(value));
      const raw = client();
      const text = await raw.get(keys.secret('STRIPE_KEY')).string();
      expect(text).not.toBeNull();
      const stored = JSON.parse(text!);
      expect(Object.keys(stored).sort()).toEqual(['ciphertext', 'nonce', 'setAt']);
      expect(text).not.toContain(value);
      expect(text).not.toContain(Buffer.from(value).toString('base64'));
      expect(Buffer.from(stored.ciphertext, 'base64').includes(Buffer.from(value))).toBe(false);
      // The whole prefix, as `etcdctl get --prefix` shows it: the value nowhere.
      const all = await raw.getAll().prefix(keys.prefix).strings();
      expect(Object.keys(all).sort()).toEqual([keys.secret(KEY_CHECK_NAME), keys.secret('STRIPE_KEY')]);
      expect(JSON.stringify(all)).not.toContain(value);
      expect(store.value('STRIPE_KEY')?.toString()).toBe(value);
    },
    TEST_MS,
  );

  it(
    "stops a node whose FNIX_SECRETS_KEY is not the cluster's, naming the fix, with or without secrets set",
    async () => {
      // No secret yet: the key check the first node made is what the second one fails on.
      const empty = cluster();
      await openSecrets(empty, randomBytes(32));
      const noSecrets = await openSecrets(empty, randomBytes(32)).catch((error: unknown) => error);
      expect(noSecrets).toBeInstanceOf(FnixError);
      expect((noSecrets as FnixError).code).toBe('SECRETS_KEY_INVALID');
      expect((noSecrets as FnixError).message).toMatch(
        /does not decrypt with this node's FNIX_SECRETS_KEY.*Every node of a cluster must have the same FNIX_SECRETS_KEY/,
      );

      // Secrets set, and the key check gone (secrets set before it existed): not one decrypts, so no start.
      const keys = cluster();
      const store = await openSecrets(keys, randomBytes(32));
      await store.set('ONE', Buffer.from('1'));
      await store.set('TWO', Buffer.from('2'));
      await client().delete().key(keys.secret(KEY_CHECK_NAME));
      const error = await openSecrets(keys, randomBytes(32)).catch((failure: unknown) => failure);
      expect((error as FnixError).code).toBe('SECRETS_KEY_INVALID');
      expect((error as FnixError).message).toContain('none of the 2 secrets in etcd decrypts');
      expect((error as FnixError).details['secrets']).toEqual(['ONE', 'TWO']);
      // ...and the wrong key did not become the cluster's: no key check was made with it.
      expect(await client().get(keys.secret(KEY_CHECK_NAME)).string()).toBeNull();
    },
    TEST_MS,
  );

  it(
    "treats a value this node's key does not open as unset, and logs its name and the fix",
    async () => {
      const keys = cluster();
      const key = randomBytes(32);
      const log = logger();
      const store = await openSecrets(keys, key, { log });
      await store.set('GOOD', Buffer.from('good'));
      await store.set('ROTATED', Buffer.from('before'));
      const changes: SecretChange[] = [];
      store.onChange((change) => changes.push(change));
      // What a node with another key would write.
      const foreign = JSON.stringify({ setAt: new Date().toISOString(), ...sealValue(randomBytes(32), 'ROTATED', Buffer.from('after')) });
      await client().put(keys.secret('ROTATED')).value(foreign);
      await waitUntil(() => !store.has('ROTATED'), BOUND_MS, 'the undecryptable value to be treated as unset');
      expect(store.value('ROTATED')).toBeUndefined();
      expect(changes).toEqual([{ name: 'ROTATED', kind: 'removed' }]);
      expect(log.lines.some((line) => /ERROR the secret ROTATED in etcd does not decrypt.*same FNIX_SECRETS_KEY/.test(line))).toBe(true);
      // A node that starts now (with the right key) serves the rest, and logs the same.
      const restartedLog = logger();
      const restarted = await openSecrets(keys, key, { log: restartedLog });
      expect(restarted.list().map((secret) => secret.name)).toEqual(['GOOD']);
      expect(restartedLog.lines.some((line) => line.includes('the secret ROTATED in etcd does not decrypt'))).toBe(true);
      // Removing it clears it from etcd, although no node can read it.
      expect(await restarted.remove('ROTATED')).toBe(true);
      expect(await client().get(keys.secret('ROTATED')).string()).toBeNull();
    },
    TEST_MS,
  );
});

describe('the cluster invoke key store', () => {
  it(
    'a key made on one node opens the function on the other within the bound',
    async () => {
      const keys = cluster();
      const a = await openKeys(keys);
      const b = await openKeys(keys);
      const created = new Map<string, number>();
      b.onChange((change) => change.type === 'created' && created.set(change.key.id, performance.now()));
      const delays: number[] = [];
      for (let round = 0; round < 10; round++) {
        const start = performance.now();
        const made = await a.create({ name: `ci-${round}`, function: 'hello' });
        expect(a.verify(made.key, 'hello').ok).toBe(true);
        await waitUntil(() => b.verify(made.key, 'hello').ok, BOUND_MS, 'node B to take the new key');
        expect(b.verify(made.key, 'other')).toEqual({ ok: false, why: 'scope', keyId: made.id });
        expect(created.has(made.id)).toBe(true);
        delays.push(created.get(made.id)! - start);
      }
      report('invoke key made on A (call) -> created on B', delays);
      expect(b.list().map((key) => key.name)).toEqual(a.list().map((key) => key.name));
      // What etcd keeps: the record with the hash, never the key's secret.
      const made = await a.create({});
      const record = await client().get(keys.key(made.id)).string();
      expect(JSON.parse(record!)).toMatchObject({ id: made.id, function: null, hash: expect.stringMatching(/^sha256:/) });
      expect(record).not.toContain(parseKeyText(made.key)!.secret);
    },
    TEST_MS,
  );

  it(
    'a key revoked on one node ends what it holds open on the other, within the bound, and is refused there',
    async () => {
      const keys = cluster();
      const a = await openKeys(keys);
      const b = await openKeys(keys);
      const guard = new KeyGuard({ keys: b, limiter: new FailureLimiter(), log: logger(), metrics: { authFailed() {}, authRefused() {} } });
      const delays: number[] = [];
      for (let round = 0; round < 10; round++) {
        const made = await a.create({ function: 'shell' });
        await waitUntil(() => b.verify(made.key, 'shell').ok, BOUND_MS, 'B to take the key');
        const id = guard.check({
          fn: { name: 'shell', manifest: { access: 'key' } },
          headers: { 'x-fnix-key': made.key },
          address: '127.0.0.1',
          route: 'session',
        });
        expect(id).toBe(made.id);
        let endedAt: number | undefined;
        guard.hold(made.id, () => (endedAt = performance.now()));
        const start = performance.now();
        const revoked = await a.revoke(made.id);
        expect(revoked).toMatchObject({ id: made.id, function: 'shell' });
        // Refused at once on the node that revoked it.
        expect(a.verify(made.key, 'shell').ok).toBe(false);
        await waitUntil(() => endedAt !== undefined, BOUND_MS, "B's held session to be ended");
        delays.push(endedAt! - start);
        expect(guard.holding(made.id)).toBe(0);
        expect(b.verify(made.key, 'shell')).toEqual({ ok: false, why: 'wrong' });
        expect(b.list().some((key) => key.id === made.id)).toBe(false);
      }
      report("invoke key revoked on A -> B's held session ended", delays);
      await expect(b.revoke('AAAAAAAAAAAA')).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    },
    TEST_MS,
  );

  it(
    'writes when a key was last used, without bringing back a key another node revoked',
    async () => {
      const keys = cluster();
      const a = await openKeys(keys);
      const b = await openKeys(keys, { flushMs: 100 });
      const made = await a.create({ name: 'used' });
      await waitUntil(() => b.verify(made.key, 'hello').ok, BOUND_MS, 'B to take the key');
      await waitUntil(() => a.list()[0]?.lastUsedAt !== null, 5000, "B's use to reach A through etcd");
      const revoked = await a.create({ name: 'revoked' });
      await waitUntil(() => b.verify(revoked.key, 'hello').ok, BOUND_MS, 'B to take the second key');
      await a.revoke(revoked.id);
      await b.close();
      expect(await client().get(keys.key(revoked.id)).string()).toBeNull();
      expect(a.list().map((key) => key.name)).toEqual(['used']);
    },
    TEST_MS,
  );
});

describe('a node whose etcd goes away', () => {
  it(
    'keeps the values it has, then picks up what changed once etcd is back',
    async () => {
      const keys = cluster();
      const key = randomBytes(32);
      const log = logger();
      const state = await openClusterState({ client: client('fast'), keys, secretsKey: key, log });
      closers.push(() => state.close());
      const a = await openSecrets(keys, key, { timeoutMs: 1500 });
      // C's watch will not reconnect for 30 s: only its checks can bring it what changed.
      const c = await openSecrets(keys, key, { etcd: client('stuck') });
      const writer = await openKeys(keys);
      await a.set('TOKEN', Buffer.from('one'));
      const held = await writer.create({ name: 'held' });
      await waitUntil(() => state.secrets.value('TOKEN')?.toString() === 'one' && state.invokeKeys.verify(held.key, 'f').ok, BOUND_MS, 'B to have both');
      await waitUntil(() => Date.now() - (state.lastSyncAt()?.getTime() ?? 0) < 2500, 5000, 'B to be in sync');

      await etcd.kill();
      // Cut off: the values stay, reads do not wait, and a write fails clearly.
      expect(state.secrets.value('TOKEN')?.toString()).toBe('one');
      expect(state.invokeKeys.verify(held.key, 'f').ok).toBe(true);
      const failed = await a.set('TOKEN', Buffer.from('lost')).catch((error: unknown) => error);
      expect((failed as FnixError).code).toBe('CLUSTER_UNAVAILABLE');
      const syncedBefore = state.lastSyncAt()!.getTime();
      await new Promise((resolve) => setTimeout(resolve, 2500));
      expect(state.lastSyncAt()!.getTime()).toBe(syncedBefore);
      expect(state.secrets.value('TOKEN')?.toString()).toBe('one');
      expect(log.lines.some((line) => line.includes("WARN the watch of the cluster's secrets in etcd broke"))).toBe(true);

      await etcd.restart();
      const restartedAt = performance.now();
      // A change made at once, before B's watch has necessarily reconnected.
      const raw = client();
      await raw.put(keys.secret('TOKEN')).value(JSON.stringify({ setAt: new Date().toISOString(), ...sealValue(key, 'TOKEN', Buffer.from('two')) }));
      await raw.delete().key(keys.key(held.id));
      // And the history compacted away: a watch resuming from where it was is cancelled by etcd, and replaced.
      const latest = await raw.put(keys.secret('OTHER')).value('not a sealed value').exec();
      await raw.kv.compact({ revision: latest.header.revision, physical: true });
      await waitUntil(() => state.secrets.value('TOKEN')?.toString() === 'two', 15_000, 'B to see the secret set after the restart');
      const secretAfter = performance.now() - restartedAt;
      await waitUntil(() => !state.invokeKeys.verify(held.key, 'f').ok, 15_000, 'B to see the key revoked after the restart');
      const keyAfter = performance.now() - restartedAt;
      await waitUntil(() => c.value('TOKEN')?.toString() === 'two', 15_000, 'C to see the secret set after the restart, without its watch');
      const checkedAfter = performance.now() - restartedAt;
      expect(c.watching()).toBe(false);
      console.log(
        `etcd restarted -> B saw a secret set ${secretAfter.toFixed(0)} ms after, a key revoked ${keyAfter.toFixed(0)} ms after; C (no watch) ${checkedAfter.toFixed(0)} ms after`,
      );
      expect(log.lines.some((line) => line.includes('ERROR a key under the secrets in etcd is not a secret fnix set') && line.includes('OTHER'))).toBe(true);
      expect(state.lastSyncAt()!.getTime()).toBeGreaterThan(syncedBefore);
      // B's watch is back: a later change arrives within the bound. C's is not: its check brings it, within checkMs (2 s).
      await waitUntil(() => state.secrets.watching(), 10_000, "B's watch to reconnect");
      expect(c.watching()).toBe(false);
      const start = performance.now();
      await a.set('TOKEN', Buffer.from('three'));
      const delay = await waitUntil(() => state.secrets.value('TOKEN')?.toString() === 'three', BOUND_MS, 'B to see a later change');
      await waitUntil(() => c.value('TOKEN')?.toString() === 'three', 2000 + 1000, 'C to see a later change');
      console.log(
        `after the restart, secret set on A -> readable on B (watch) ${delay.toFixed(1)} ms, on C (check) ${(performance.now() - start).toFixed(0)} ms`,
      );
      expect(log.lines.some((line) => line.includes("INFO the watch of the cluster's secrets in etcd is back"))).toBe(true);
    },
    TEST_MS,
  );
});
