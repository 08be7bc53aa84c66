/**
 * @module
 * Three fnix hosts on this machine (test/helpers/cluster/: a network namespace and a mount namespace
 * each, their own Podman), sharing one store over the network the seed's way: each node's /nix/store an
 * overlay whose lower layer is an sshfs mount (NFS in production) of one export; three etcd members;
 * HAProxy in front with the configuration `fnix cluster haproxy-config` prints. One push through HAProxy
 * reaching every node, then each failure the docs' failure table states, with its figures printed
 * (`cluster-figure` lines, which docs/cluster.md quotes).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { haproxyConfig } from '../../cluster/haproxy.ts';
import { ClusterLab } from '../helpers/cluster/lab.ts';
import { type LabNode, PROJECT_ROOT } from '../helpers/cluster/node.ts';
import { greetingPath, greetingSet, greetRepository, load, type Outcome } from '../helpers/cluster/workload.ts';
import { waitUntil } from '../helpers/processes.ts';
import { openSession } from '../helpers/session-client.ts';

const TOKEN = `netns-${randomBytes(8).toString('hex')}`;
const NODES = ['n1', 'n2', 'n3'] as const;
let lab: ClusterLab;
let repo: Awaited<ReturnType<typeof greetRepository>>;
let lb: string;
let env: Record<string, string>;
const gateways: Record<string, LabNode> = {};

const figure = (name: string, value: unknown) => console.log(`cluster-figure ${name} ${JSON.stringify(value)}`);
const healthOf = async (node: string) => {
  const answer = await fetch(`${lab.url(node)}/healthz`, { signal: AbortSignal.timeout(3000) });
  return { status: answer.status, body: (await answer.json()) as { status: string; cluster: Record<string, unknown> } };
};
const status = async (node: string) =>
  (await (await fetch(`${lab.url(node)}/api/cluster`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as {
    builder: string | null;
    members: { name: string }[];
    live: { deployment: string } | null;
    acks: Record<string, { deployment: string; ok: boolean }>;
  };
const remote = () => `http://fnix:${TOKEN}@${lb}/git/functions.git`;

function start(node: string, extra: Record<string, string> = {}): LabNode {
  const gateway = lab.startNode(node, {
    ...env,
    ...lab.storeEnv(node),
    ...(node === 'n3' ? { FNIX_BUILDER: 'false', FNIX_CLUSTER_STALE: 'unhealthy' } : {}),
    ...extra,
  });
  gateways[node] = gateway;
  return gateway;
}

/** The failures of a load, and the longest request. */
function summary(outcomes: Outcome[]) {
  const failed = outcomes.filter((o) => o.status !== 200);
  return { requests: outcomes.length, failed: failed.length, longestMs: Math.round(Math.max(...outcomes.map((o) => o.ms))) };
}

beforeAll(async () => {
  await execa('bash', ['scripts/build.sh'], { cwd: PROJECT_ROOT });
  lab = await ClusterLab.create({ store: 'shared', builders: ['n1', 'n2'] });
  lb = lab.ip('lb');
  env = {
    FNIX_CLUSTER_ETCD: lab.etcdEndpoints().join(','),
    FNIX_TOKEN: TOKEN,
    FNIX_SECRETS_KEY: randomBytes(32).toString('base64'),
    FNIX_CLUSTER_ACK_TIMEOUT: '20s',
  };
  // n1 first, so that it is the builder; then the others, at once.
  await start('n1').waitHealthy(120_000);
  await Promise.all([start('n2').waitHealthy(120_000), start('n3').waitHealthy(120_000)]);
  const members = NODES.map((name) => ({ name, url: lab.url(name), builderEligible: name !== 'n3' }));
  await lab.startHaproxy(haproxyConfig({ members, bind: `${lb}:80` }));
  repo = await greetRepository(join(lab.dir, 'repo'), join(PROJECT_ROOT, 'functions/hello'));
  await waitUntil(async () => (await fetch(`http://${lb}/healthz`).catch(() => undefined))?.status === 200, 20_000, 'HAProxy to find a node');
}, 300_000);

afterEach(async ({ task }) => {
  if (task.result?.state === 'fail' && lab) console.log(await lab.logTails(6000));
});

afterAll(async () => {
  for (const gateway of Object.values(gateways)) expect(await gateway.bugs()).toEqual([]);
  await lab?.destroy();
}, 120_000);

describe('three hosts sharing one store over the network, behind HAProxy', () => {
  let greetNode: string;

  it('takes a push through HAProxy and has it live on every node, its new store path reaching them over the shared mount', async () => {
    const nonce = randomBytes(4).toString('hex');
    const probe = join(lab.dir, 'probe.nix');
    await writeFile(probe, greetingSet(nonce, `hi-${nonce}`));
    const expected = await greetingPath(PROJECT_ROOT, probe);
    // n3 looks the path up before it exists: its overlay keeps that negative lookup until fnix refreshes it.
    expect((await lab.run('n3', ['stat', expected], { reject: false })).exitCode).not.toBe(0);
    const begin = performance.now();
    const pushed = await repo.push(remote(), nonce, `hi-${nonce}`);
    figure('push-live-shared-ms', Math.round(performance.now() - begin));
    expect(pushed.exitCode, pushed.all).toBe(0);
    expect(pushed.all).toMatch(/remote: store: \d+ path\(s\) published \(shared\)/);
    expect(pushed.all).toMatch(/remote: all 3 node\(s\) live on d-/);
    // Built on the builder, copied into the export once, seen by every node through its mount.
    expect(existsSync(join(lab.home!.path, expected.slice('/nix/store/'.length)))).toBe(true);
    for (const node of NODES) {
      const answer = await fetch(`${lab.url(node)}/fn/greet`, { method: 'POST', body: '' });
      expect(await answer.text()).toBe(`hi-${nonce}\n`);
      expect((await lab.run(node, ['nix-store', '--check-validity', expected], { reject: false })).exitCode, node).toBe(0);
    }
    expect(await gateways['n3']!.log()).toMatch(/store paths taken mode=shared added=\d+ refreshed=true/);
    // Not copied into n3's own upper layer: it reads it from the export.
    expect(existsSync(join(lab.host('n3').dir, 'upper/store', expected.slice('/nix/store/'.length)))).toBe(false);
  });

  it('keeps each function on one node through HAProxy, sessions included', async () => {
    const seen = new Set<string | null>();
    for (let i = 0; i < 12; i += 1) seen.add((await fetch(`http://${lb}/fn/greet/any/${i}`, { method: 'POST', body: '' })).headers.get('x-fnix-node'));
    expect(seen.size).toBe(1);
    greetNode = [...seen][0]!;
    expect(NODES).toContain(greetNode);
    const session = await openSession(`http://${lb}`, '/sessions/greet');
    await session.waitFor('hi-');
    expect((await session.closed).status).toEqual({ exitCode: 0 });
    // Internal routes are for the nodes, not for clients.
    expect((await fetch(`http://${lb}/cluster/builder`)).status).toBe(404);
  });

  it('fails only the requests in flight when a node dies under load, and moves the rest to the others without a hang', async () => {
    const running = load(`http://${lb}/fn/greet`, 8);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const killedAt = running.elapsedMs();
    await gateways[greetNode]!.kill();
    await new Promise((resolve) => setTimeout(resolve, 5000));
    const outcomes = await running.stop();
    const after = outcomes.filter((o) => o.startMs > killedAt);
    const failedAfter = after.filter((o) => o.status !== 200);
    const lastFailure = Math.max(0, ...failedAfter.map((o) => o.startMs + o.ms - killedAt));
    figure('node-kill', { ...summary(outcomes), failedAfterKill: failedAfter.length, lastFailureMsAfterKill: Math.round(lastFailure) });
    // No request hung: each one ended well within its 10 s limit.
    expect(Math.max(...outcomes.map((o) => o.ms))).toBeLessThan(5000);
    // After HAProxy's check took the node out (2 checks a second apart), every request succeeded elsewhere.
    expect(after.filter((o) => o.startMs > killedAt + 3500).every((o) => o.status === 200 && o.node !== greetNode)).toBe(true);
    expect(outcomes.filter((o) => o.startMs < killedAt - 200).every((o) => o.status === 200)).toBe(true);
    await lab.removeContainers(greetNode);
    await start(greetNode).waitHealthy(120_000);
    await waitUntil(async () => (await status('n1')).members.length === 3, 20_000, 'the node to rejoin');
  });

  it('keeps serving without a pause when the etcd leader is killed, and a push meanwhile waits or fails clearly', async () => {
    const leader = (await lab.etcdLeader())!;
    const running = load(`http://${lb}/fn/hello`, 4);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await lab.killEtcd(leader);
    const killedAt = performance.now();
    const nonce = randomBytes(4).toString('hex');
    const pushed = await repo.push(remote(), nonce, `after-${nonce}`);
    const pushMs = performance.now() - killedAt;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const outcomes = await running.stop();
    figure('etcd-leader-kill', { ...summary(outcomes), pushExit: pushed.exitCode, pushMs: Math.round(pushMs) });
    expect(summary(outcomes).failed).toBe(0);
    expect(summary(outcomes).longestMs).toBeLessThan(1000);
    if (pushed.exitCode !== 0) {
      expect(pushed.all).toMatch(/CLUSTER_UNAVAILABLE|etcd did not answer|cannot reach etcd/);
      await repo.undo();
    }
    // Nothing half-activated: every node serves the one live deployment.
    const live = (await status('n1')).live!.deployment;
    for (const node of NODES) await waitUntil(async () => (await healthOf(node)).body.cluster['serving'] === live, 20_000, `${node} to serve ${live}`);
    await lab.restartEtcd(leader);
  });

  it('has a node cut off from etcd keep serving, say it is stale (out of HAProxy when so configured), and catch up when healed', async () => {
    await lab.partition('n3', ['e1', 'e2', 'e3']);
    const cutAt = performance.now();
    // n3 runs with FNIX_CLUSTER_STALE=unhealthy: /healthz 503 once its lease's time (5 s) has passed.
    await waitUntil(async () => (await healthOf('n3')).status === 503, 20_000, 'n3 to say it is stale');
    figure('partition-stale-after-ms', Math.round(performance.now() - cutAt));
    expect((await healthOf('n3')).body).toMatchObject({ status: 'stale', cluster: { stale: true } });
    expect((await fetch(`${lab.url('n3')}/fn/hello`, { method: 'POST', body: '' })).status).toBe(200);
    // A push meanwhile goes live on the others; n3, whose lease ran out, is not waited for.
    await waitUntil(async () => (await status('n1')).members.length === 2, 20_000, "n3's lease to run out");
    const nonce = randomBytes(4).toString('hex');
    const pushed = await repo.push(remote(), nonce, `cut-${nonce}`);
    expect(pushed.exitCode, pushed.all).toBe(0);
    expect(pushed.all).toMatch(/all 2 node\(s\) live/);
    expect(await (await fetch(`${lab.url('n3')}/fn/greet`, { method: 'POST', body: '' })).text()).not.toContain(nonce);
    await lab.heal('n3');
    const healedAt = performance.now();
    await waitUntil(
      async () => (await (await fetch(`${lab.url('n3')}/fn/greet`, { method: 'POST', body: '' })).text()).includes(nonce),
      30_000,
      'n3 to catch up',
    );
    figure('partition-caught-up-after-heal-ms', Math.round(performance.now() - healedAt));
    await waitUntil(async () => (await healthOf('n3')).status === 200, 20_000, 'n3 to be healthy again');
  });

  it('fails a push clearly when the builder dies during it, elects another, and takes the next push there', async () => {
    const before = (await status('n2')).live!.deployment;
    const builder = (await status('n2')).builder!;
    const nonce = randomBytes(4).toString('hex');
    // Its build takes 6 s: the builder dies in the middle of it.
    let settled = false;
    const pushing = repo.push(remote(), nonce, `slow-${nonce}`, 6).finally(() => {
      settled = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(settled).toBe(false);
    await gateways[builder]!.kill();
    const killedAt = performance.now();
    const pushed = await pushing;
    figure('builder-kill-push-failed-after-ms', Math.round(performance.now() - killedAt));
    expect(pushed.exitCode).not.toBe(0);
    await repo.undo();
    const other = builder === 'n1' ? 'n2' : 'n1';
    await waitUntil(async () => (await status(other)).builder === other, 20_000, 'another builder');
    figure('builder-kill-reelected-after-ms', Math.round(performance.now() - killedAt));
    expect((await status(other)).live!.deployment).toBe(before);
    // HAProxy's check of /cluster/builder sends /git/ to the new builder.
    const next = randomBytes(4).toString('hex');
    let again = await repo.push(remote(), next, `next-${next}`);
    for (let i = 0; again.exitCode !== 0 && i < 10; i += 1) {
      await repo.undo();
      await new Promise((resolve) => setTimeout(resolve, 1000));
      again = await repo.push(remote(), next, `next-${next}`);
    }
    expect(again.exitCode, again.all).toBe(0);
    expect(again.all).toMatch(/all 2 node\(s\) live/);
    await lab.removeContainers(builder);
  });
});
