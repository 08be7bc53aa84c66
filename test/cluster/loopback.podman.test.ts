/**
 * @module
 * A cluster on one host: a real etcd and three real gateway processes (gateway/main.ts) on loopback,
 * sharing the host's store (so the store transport has nothing to move: test/cluster/netns.podman.test.ts
 * runs the same nodes on three simulated hosts with their own stores). What is tested here is the
 * coordination: the builder election, pushes going live on every node with their acknowledgements in
 * git's `remote:` lines, pushes refused by other nodes, a node joining, a rollback through any node, the
 * builder's death and its successor, a restart catching up, and etcd's loss and return.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { instanceOf } from '../../runtime/container/launcher.ts';
import { type LocalEtcd, freePort, startEtcd } from '../helpers/etcd.ts';
import { git, pushFixtures } from '../helpers/git.ts';
import { type MainProcess, startMain } from '../helpers/main-process.ts';
import { waitUntil } from '../helpers/processes.ts';

const HELLO = join(import.meta.dirname, '../../functions/hello');
const ECHO = join(import.meta.dirname, '../../functions/echo');
const PRIVATE = join(import.meta.dirname, '../../functions/private-hello');
const READER = join(import.meta.dirname, '../fixtures/secrets/reader');
const TOKEN = `cluster-test-${randomBytes(8).toString('hex')}`;

interface Node {
  name: string;
  port: number;
  url: string;
  stateDir: string;
  main?: MainProcess | undefined;
}

let dir: string;
let etcd: LocalEtcd;
let env: Record<string, string>;
const nodes: Record<string, Node> = {};
let repo: string;

async function start(node: Node): Promise<void> {
  node.main = await startMain({
    ...env,
    FNIX_NODE_NAME: node.name,
    FNIX_NODE_URL: node.url,
    FNIX_PORT: String(node.port),
    FNIX_STATE_DIR: node.stateDir,
  });
}

/** Sends `signal`; a SIGTERM is followed by a SIGKILL if the node has not exited within `graceMs`. */
async function stop(node: Node, signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM', graceMs = 15_000): Promise<void> {
  const child = node.main?.child;
  node.main = undefined;
  if (!child || child.exitCode !== null) return;
  const exited = child.then(
    () => true,
    () => true,
  );
  child.kill(signal);
  if (await Promise.race([exited, new Promise<false>((resolve) => setTimeout(() => resolve(false), graceMs))])) return;
  child.kill('SIGKILL');
  await exited;
}

/** Every fetch gives up after 5 s: a hang fails the test, it does not stall it. */
const timed = (init: RequestInit = {}): RequestInit => ({ signal: AbortSignal.timeout(5000), ...init });
const figure = (name: string, value: unknown) => console.log(`cluster-figure ${name} ${JSON.stringify(value)}`);
const api = (node: Node, path: string, init: RequestInit = {}) =>
  fetch(`${node.url}${path}`, timed({ ...init, headers: { authorization: `Bearer ${TOKEN}`, ...(init.headers ?? {}) } }));
const health = async (node: Node) => (await (await fetch(`${node.url}/healthz`, timed())).json()) as { status: string; cluster: Record<string, unknown> };
const hello = (node: Node, name?: string) => fetch(`${node.url}/fn/hello${name ? `?name=${name}` : ''}`, timed({ method: 'POST', body: '' }));
const sha = (value: string) => createHash('sha256').update(value).digest('hex');
const readerSha = async (node: Node) => /file_sha=(\w+)/.exec(await (await fetch(`${node.url}/fn/reader`, timed({ method: 'POST', body: '' }))).text())?.[1];
const withKey = (node: Node, key: string) => fetch(`${node.url}/fn/private-hello`, timed({ method: 'POST', headers: { authorization: `Bearer ${key}` } }));

/** Points the clone's origin at `node`'s /git/ and pushes `functions`. */
async function pushTo(node: Node, message: string, functions: Record<string, string>) {
  await git(repo, 'remote', 'set-url', 'origin', `http://fnix:${TOKEN}@127.0.0.1:${node.port}/git/functions.git`);
  return pushFixtures(repo, message, functions);
}

function deploymentOf(pushOutput: string): string {
  const id = /deployment (d-[\w-]+) is live/.exec(pushOutput)?.[1];
  if (!id) throw new Error(`the push did not go live:\n${pushOutput}`);
  return id;
}

async function builderName(): Promise<string | undefined> {
  for (const node of Object.values(nodes)) {
    if (!node.main) continue;
    const answer = await fetch(`${node.url}/cluster/builder`, timed()).catch(() => undefined);
    if (answer?.status === 200) return node.name;
  }
  return undefined;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fnix-cluster-'));
  etcd = await startEtcd();
  await execa('nix-store', ['--generate-binary-cache-key', 'fnix-test-1', join(dir, 'cache.sk'), join(dir, 'cache.pk')]);
  const publicKey = (await execa('cat', [join(dir, 'cache.pk')])).stdout.trim();
  env = {
    FNIX_CLUSTER_ETCD: etcd.url,
    FNIX_CLUSTER_NAME: `t${randomBytes(3).toString('hex')}`,
    FNIX_STORE_MODE: 'cache',
    FNIX_CACHE_SECRET_KEY_FILE: join(dir, 'cache.sk'),
    FNIX_CACHE_PUBLIC_KEY: publicKey,
    FNIX_TOKEN: TOKEN,
    FNIX_SECRETS_KEY: randomBytes(32).toString('base64'),
    FNIX_POOL_SIZE: '1',
    FNIX_CLUSTER_ACK_TIMEOUT: '30s',
  };
  for (const name of ['a', 'b', 'c']) {
    const port = await freePort();
    nodes[name] = { name, port, url: `http://127.0.0.1:${port}`, stateDir: join(dir, name) };
  }
  await start(nodes['a']!);
  await start(nodes['b']!);
  repo = join(dir, 'repo');
  await execa('git', ['init', '--quiet', '--initial-branch', 'main', repo]);
  await git(repo, 'remote', 'add', 'origin', 'http://unset');
}, 180_000);

afterEach(({ task }) => {
  if (task.result?.state !== 'fail') return;
  for (const node of Object.values(nodes)) if (node.main) console.log(`===== node ${node.name} =====\n${node.main.output().slice(-4000)}`);
});

afterAll(async () => {
  await Promise.all(Object.values(nodes).map((node) => stop(node, 'SIGTERM', 10_000)));
  // A node killed with SIGKILL and not started again leaves its containers: removed by its label.
  for (const node of Object.values(nodes)) {
    const { stdout } = await execa('podman', ['ps', '-aq', '--filter', `label=io.fnix.instance=${instanceOf(node.stateDir)}`], { reject: false });
    if (stdout.trim()) await execa('podman', ['rm', '-f', '-t', '0', ...stdout.trim().split('\n')], { reject: false });
  }
  await etcd?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 120_000);

describe('a cluster on one host', () => {
  let first: string;

  it('elects the first node builder; both are members; nothing is live yet', async () => {
    const status = (await (await api(nodes['b']!, '/api/cluster')).json()) as { builder: string; members: { name: string }[]; live: unknown };
    expect(status.builder).toBe('a');
    expect(status.members.map((m) => m.name)).toEqual(['a', 'b']);
    expect(status.live).toBeNull();
    expect((await fetch(`${nodes['a']!.url}/cluster/builder`, timed())).status).toBe(200);
    expect((await fetch(`${nodes['b']!.url}/cluster/builder`, timed())).status).toBe(503);
    const b = await health(nodes['b']!);
    expect(b.status).toBe('ok');
    expect(b.cluster).toMatchObject({ node: 'b', builder: 'a', isBuilder: false, live: null, synced: true, stale: false, members: 2 });
    // The builder's own view (from its watch of members/) has b too, within a moment: the next push waits for b.
    const seenMs = await waitUntil(
      async () => ((await (await api(nodes['a']!, '/api/cluster')).json()) as { members: { name: string }[] }).members.length === 2,
      5000,
      "the builder's view to list b",
    );
    figure('builder-sees-joined-member-ms', Math.round(seenMs));
  });

  it('takes a push on the builder and reports each node going live in remote: lines', async () => {
    const pushed = await pushTo(nodes['a']!, 'hello', { hello: HELLO });
    expect(pushed.exitCode, pushed.all).toBe(0);
    first = deploymentOf(pushed.all);
    expect(pushed.all).toMatch(/remote: store: \d+ path\(s\) published \(cache\)/);
    expect(pushed.all).toMatch(new RegExp(`remote: a: live on ${first}`));
    expect(pushed.all).toMatch(new RegExp(`remote: b: live on ${first}`));
    expect(pushed.all).toMatch(new RegExp(`remote: all 2 node\\(s\\) live on ${first}`));
    for (const node of [nodes['a']!, nodes['b']!]) {
      const answer = await hello(node);
      expect(answer.status).toBe(200);
      expect(answer.headers.get('x-fnix-node')).toBe(node.name);
      expect(await answer.text()).toMatch(/Hello/);
      expect((await health(node)).cluster).toMatchObject({ live: first, serving: first });
    }
    const status = (await (await api(nodes['a']!, '/api/cluster')).json()) as { live: { deployment: string }; acks: Record<string, { ok: boolean }> };
    expect(status.live.deployment).toBe(first);
    expect(status.acks).toMatchObject({ a: { ok: true }, b: { ok: true } });
  });

  it('refuses a push to a node that is not the builder, naming the builder, and changes nothing', async () => {
    const pushed = await pushTo(nodes['b']!, 'not here', { hello: HELLO, echo: ECHO });
    expect(pushed.exitCode).not.toBe(0);
    expect(pushed.all).toContain('this node (b) is not the builder');
    expect(pushed.all).toContain(`${nodes['a']!.url}/git/functions.git`);
    await git(repo, 'reset', '--quiet', '--hard', 'HEAD~1');
    expect((await fetch(`${nodes['b']!.url}/fn/echo`, timed({ method: 'POST', body: 'x' }))).status).toBe(404);
    expect((await health(nodes['b']!)).cluster).toMatchObject({ serving: first });
  });

  it('has a node that joins serve the live deployment before it says it is serving, with the history and the commit', async () => {
    await start(nodes['c']!);
    expect((await health(nodes['c']!)).cluster).toMatchObject({ node: 'c', live: first, serving: first, synced: true });
    expect((await hello(nodes['c']!)).status).toBe(200);
    const listed = (await (await api(nodes['c']!, '/api/deployments')).json()) as { deployments: { id: string; status: string }[] };
    expect(listed.deployments.find((d) => d.id === first)?.status).toBe('active');
    const { stdout } = await execa('git', ['--git-dir', join(nodes['c']!.stateDir, 'git/functions.git'), 'rev-parse', 'main']);
    expect(stdout.trim()).toBe((await git(repo, 'rev-parse', 'HEAD')).stdout.trim());
  });

  it("gathers a function's log lines from every node, each labelled with its node", async () => {
    for (const node of Object.values(nodes)) expect((await hello(node, `from-${node.name}`)).status).toBe(200);
    const wanted = Object.values(nodes).map((node) => ({ node: node.name, line: `greeted from-${node.name}` }));
    let lines: { node: string; line: string; stream: string }[] = [];
    // A line is kept as the node reads the function's stderr: within a moment of the answer.
    await waitUntil(
      async () => {
        const answer = await api(nodes['b']!, '/api/functions/hello/logs?limit=1000');
        lines = ((await answer.json()) as { lines: typeof lines }).lines;
        return wanted.every((w) => lines.some((l) => l.node === w.node && l.line === w.line));
      },
      5000,
      "the three nodes' lines",
    );
    for (const w of wanted) expect(lines.find((l) => l.line === w.line)).toMatchObject({ node: w.node, stream: 'stderr' });
  });

  it('rolls back through any node, on every node', async () => {
    const pushed = await pushTo(nodes['a']!, 'echo too', { hello: HELLO, echo: ECHO });
    expect(pushed.all).toMatch(/all 3 node\(s\) live/);
    for (const node of Object.values(nodes)) expect((await fetch(`${node.url}/fn/echo`, timed({ method: 'POST', body: 'x' }))).status).toBe(200);
    const rolled = await api(nodes['c']!, `/api/deployments/${first}/activate`, { method: 'POST' });
    expect(rolled.status, await rolled.clone().text()).toBe(200);
    for (const node of Object.values(nodes)) {
      await waitUntil(async () => (await health(node)).cluster['serving'] === first, 15_000, `${node.name} to serve the rollback`);
      expect((await fetch(`${node.url}/fn/echo`, timed({ method: 'POST', body: 'x' }))).status).toBe(404);
    }
  });

  it('keeps secrets and invoke keys in etcd: set, rotated or revoked on one node, they hold on every node at once', async () => {
    const value = `s3cret-${randomBytes(6).toString('hex')}`;
    expect((await api(nodes['b']!, '/api/secrets/API_TOKEN', { method: 'PUT', body: value })).status).toBe(200);
    const pushed = await pushTo(nodes['a']!, 'private and reader', { hello: HELLO, 'private-hello': PRIVATE, reader: READER });
    expect(pushed.all).toMatch(/all 3 node\(s\) live/);
    const created = (await (await api(nodes['c']!, '/api/keys', { method: 'POST', body: '{"function":"private-hello"}' })).json()) as {
      id: string;
      key: string;
    };
    for (const node of Object.values(nodes)) {
      expect(await readerSha(node), node.name).toBe(sha(value));
      expect((await withKey(node, created.key)).status, node.name).toBe(200);
    }
    // Rotated on b while the deployment runs: every node's next invocations see the new value.
    const rotated = `r0tated-${randomBytes(6).toString('hex')}`;
    const putAt = performance.now();
    expect((await api(nodes['b']!, '/api/secrets/API_TOKEN', { method: 'PUT', body: rotated })).status).toBe(200);
    const rotatedMs = await Promise.all(
      Object.values(nodes).map(async (node) => {
        await waitUntil(async () => (await readerSha(node)) === sha(rotated), 2000 - (performance.now() - putAt), `the rotated secret on ${node.name}`);
        return Math.round(performance.now() - putAt);
      }),
    );
    figure('secret-rotated-everywhere-ms', Object.fromEntries(Object.keys(nodes).map((name, i) => [name, rotatedMs[i]])));
    expect(Math.max(...rotatedMs)).toBeLessThan(2000);
    // Revoked on a: refused on every node.
    const deleteAt = performance.now();
    expect((await api(nodes['a']!, `/api/keys/${created.id}`, { method: 'DELETE' })).status).toBe(200);
    const revokedMs = await Promise.all(
      Object.values(nodes).map(async (node) => {
        await waitUntil(
          async () => (await withKey(node, created.key)).status === 401,
          2000 - (performance.now() - deleteAt),
          `the revoked key to be refused on ${node.name}`,
        );
        return Math.round(performance.now() - deleteAt);
      }),
    );
    figure('key-revoked-everywhere-ms', Object.fromEntries(Object.keys(nodes).map((name, i) => [name, revokedMs[i]])));
    expect(Math.max(...revokedMs)).toBeLessThan(2000);
  });

  it('elects another builder when the builder dies, and takes the next push there', async () => {
    await stop(nodes['a']!, 'SIGKILL');
    const begin = performance.now();
    await waitUntil(async () => (await builderName()) !== undefined, 20_000, 'another builder');
    const elected = (await builderName())!;
    expect(['b', 'c']).toContain(elected);
    // The dead node's lease runs out within FNIX_CLUSTER_LEASE_TTL (5 s): it is no longer waited for.
    await waitUntil(
      async () => ((await (await api(nodes['b']!, '/api/cluster')).json()) as { members: unknown[] }).members.length === 2,
      15_000,
      "a's membership to end",
    );
    const tookMs = performance.now() - begin;
    expect(tookMs).toBeLessThan(15_000);
    const pushed = await pushTo(nodes[elected]!, 'echo again', { hello: HELLO, echo: ECHO });
    expect(pushed.exitCode, pushed.all).toBe(0);
    expect(pushed.all).toMatch(/all 2 node\(s\) live/);
    for (const node of [nodes['b']!, nodes['c']!]) expect((await fetch(`${node.url}/fn/echo`, timed({ method: 'POST', body: 'x' }))).status).toBe(200);
  });

  it('has a restarted node catch up with what went live while it was down', async () => {
    const live = ((await (await api(nodes['b']!, '/api/cluster')).json()) as { live: { deployment: string } }).live.deployment;
    await start(nodes['a']!);
    expect((await health(nodes['a']!)).cluster).toMatchObject({ serving: live, synced: true });
    expect((await fetch(`${nodes['a']!.url}/fn/echo`, timed({ method: 'POST', body: 'x' }))).status).toBe(200);
  });

  it('keeps serving without etcd, says it is stale, refuses pushes clearly; and recovers when etcd is back', async () => {
    const builder = nodes[(await builderName())!]!;
    await etcd.kill();
    await waitUntil(async () => (await health(nodes['b']!)).cluster['stale'] === true, 20_000, 'b to say it is stale');
    const b = await fetch(`${nodes['b']!.url}/healthz`, timed());
    // FNIX_CLUSTER_STALE=serve (the default): still 200, so that losing etcd does not empty the load balancer.
    expect(b.status).toBe(200);
    for (const node of Object.values(nodes)) expect((await fetch(`${node.url}/fn/echo`, timed({ method: 'POST', body: 'x' }))).status).toBe(200);
    const refused = await pushTo(builder, 'without etcd', { hello: HELLO });
    expect(refused.exitCode).not.toBe(0);
    expect(refused.all).toMatch(/cannot reach etcd/);
    await git(repo, 'reset', '--quiet', '--hard', 'HEAD~1');
    await etcd.restart();
    await waitUntil(
      async () => (await Promise.all(Object.values(nodes).map(health))).every((h) => h.cluster['stale'] === false),
      30_000,
      'every node to hear from etcd again',
    );
    await waitUntil(async () => (await builderName()) !== undefined, 20_000, 'a builder');
    const again = await pushTo(nodes[(await builderName())!]!, 'with etcd', { hello: HELLO });
    expect(again.exitCode, again.all).toBe(0);
    expect(again.all).toMatch(/all 3 node\(s\) live/);
    for (const node of Object.values(nodes)) expect((await fetch(`${node.url}/fn/echo`, timed({ method: 'POST', body: 'x' }))).status).toBe(404);
  });
});
