/**
 * @module
 * Three fnix hosts whose stores are their own (each node's /nix/store an overlay over this machine's,
 * with its own upper layer and Nix database): the store reaches them through the builder's signed
 * binary cache. A push's new store path is built on the builder, signed into its cache, and substituted
 * by each node, which checks the signature: a node given another public key refuses it, and the push
 * names that node as not live.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ClusterLab } from '../helpers/cluster/lab.ts';
import { type LabNode, PROJECT_ROOT } from '../helpers/cluster/node.ts';
import { greetingPath, greetingSet, greetRepository } from '../helpers/cluster/workload.ts';

const TOKEN = `cache-${randomBytes(8).toString('hex')}`;
let lab: ClusterLab;
let repo: Awaited<ReturnType<typeof greetRepository>>;
const gateways: Record<string, LabNode> = {};
/** Every fetch gives up after 5 s: a hang fails the test, it does not stall it. */
const timed = (init: RequestInit = {}): RequestInit => ({ ...init, signal: AbortSignal.timeout(5000) });

beforeAll(async () => {
  await execa('bash', ['scripts/build.sh'], { cwd: PROJECT_ROOT });
  lab = await ClusterLab.create({ store: 'cache', builders: ['n1'], etcd: ['e1'] });
  const key = (name: string) => execa('nix-store', ['--generate-binary-cache-key', name, join(lab.dir, `${name}.sk`), join(lab.dir, `${name}.pk`)]);
  await key('fnix-cluster-1');
  await key('someone-else-1');
  const publicKey = async (name: string) => (await readFile(join(lab.dir, `${name}.pk`), 'utf8')).trim();
  const env = {
    FNIX_CLUSTER_ETCD: lab.etcdEndpoints().join(','),
    FNIX_TOKEN: TOKEN,
    FNIX_SECRETS_KEY: randomBytes(32).toString('base64'),
    FNIX_CLUSTER_ACK_TIMEOUT: '10s',
    FNIX_CACHE_SECRET_KEY_FILE: join(lab.dir, 'fnix-cluster-1.sk'),
    FNIX_CACHE_PUBLIC_KEY: await publicKey('fnix-cluster-1'),
  };
  gateways['n1'] = lab.startNode('n1', { ...env, ...lab.storeEnv('n1') });
  await gateways['n1'].waitHealthy(120_000);
  gateways['n2'] = lab.startNode('n2', { ...env, ...lab.storeEnv('n2'), FNIX_BUILDER: 'false' });
  // n3 trusts another key: whatever the builder signs, it refuses.
  gateways['n3'] = lab.startNode('n3', { ...env, ...lab.storeEnv('n3'), FNIX_BUILDER: 'false', FNIX_CACHE_PUBLIC_KEY: await publicKey('someone-else-1') });
  await Promise.all([gateways['n2'].waitHealthy(120_000), gateways['n3'].waitHealthy(120_000)]);
  repo = await greetRepository(join(lab.dir, 'repo'), join(PROJECT_ROOT, 'functions/hello'));
}, 300_000);

afterEach(async ({ task }) => {
  if (task.result?.state === 'fail' && lab) console.log(await lab.logTails(6000));
});

afterAll(async () => {
  const bugs: string[] = [];
  try {
    for (const [node, gateway] of Object.entries(gateways)) bugs.push(...(await gateway.bugs()).map((line) => `${node}: ${line}`));
  } finally {
    await lab?.destroy();
  }
  expect(bugs).toEqual([]);
}, 120_000);

describe('three hosts with stores of their own, fed by the builder’s signed binary cache', () => {
  it('substitutes a push’s new store path on every node that trusts the key, and names the one that does not', async () => {
    const nonce = randomBytes(4).toString('hex');
    const probe = join(lab.dir, 'probe.nix');
    await writeFile(probe, greetingSet(nonce, `cached-${nonce}`));
    const expected = await greetingPath(PROJECT_ROOT, probe);
    const name = expected.slice('/nix/store/'.length);
    const begin = performance.now();
    const pushed = await repo.push(`http://fnix:${TOKEN}@${lab.ip('n1')}:8080/git/functions.git`, nonce, `cached-${nonce}`);
    console.log(`cluster-figure push-live-cache-ms ${Math.round(performance.now() - begin)}`);
    expect(pushed.exitCode, pushed.all).toBe(0);
    expect(pushed.all).toMatch(/remote: store: \d+ path\(s\) published \(cache\)/);
    expect(pushed.all).toMatch(/remote: n1: live on d-/);
    expect(pushed.all).toMatch(/remote: n2: live on d-/);
    expect(pushed.all).toMatch(/remote: n3: not live yet: substituting .* failed/);
    expect(pushed.all).toMatch(/not every node is live on d-[\w-]+ after 10 s: n3 \(substituting/);
    // Only the builder built it; n2 has it in its own store's upper layer, substituted and valid.
    expect(existsSync(join('/nix/store', name))).toBe(false);
    expect(existsSync(join(lab.host('n2').dir, 'upper/store', name))).toBe(true);
    expect((await lab.run('n2', ['nix-store', '--check-validity', expected], { reject: false })).exitCode).toBe(0);
    expect(await (await fetch(`${lab.url('n2')}/fn/greet`, timed({ method: 'POST', body: '' }))).text()).toBe(`cached-${nonce}\n`);
    // n3 keeps serving what it served before, and says why it does not serve the new one.
    expect(existsSync(join(lab.host('n3').dir, 'upper/store', name))).toBe(false);
    const n3 = (await (await fetch(`${lab.url('n3')}/healthz`, timed())).json()) as { cluster: { serving: string | null; error: string | null } };
    expect(n3.cluster.error).toMatch(/substituting/);
    // The cache is the builder's, and it is for the nodes only: HAProxy refuses /cluster/ (haproxy tests).
    expect((await fetch(`${lab.url('n1')}/cluster/cache/nix-cache-info`, timed())).status).toBe(200);
    expect((await fetch(`${lab.url('n1')}/cluster/cache/../token`, timed())).status).toBe(404);
  });
});
