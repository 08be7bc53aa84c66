/**
 * @module
 * Three fnix hosts on this machine (test/helpers/cluster/: a network namespace and a mount namespace
 * each, their own Podman), sharing one store over the network the seed's way: each node's /nix/store an
 * overlay whose lower layer is an sshfs mount (NFS in production) of one export; three etcd members;
 * HAProxy in front with the configuration `fnix cluster haproxy-config` (the compiled CLI, asked of n1) prints. One push through HAProxy
 * reaching every node, then each failure the docs' failure table states, with its figures printed
 * (`cluster-figure` lines, which docs/cluster.md quotes).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ClusterLab } from '../helpers/cluster/lab.ts';
import { type LabNode, PROJECT_ROOT } from '../helpers/cluster/node.ts';
import { greetingPath, greetingSet, greetRepository, load, type Outcome } from '../helpers/cluster/workload.ts';
import { waitUntil } from '../helpers/processes.ts';
import { openSession } from '../helpers/session-client.ts';

const TOKEN = `netns-${randomBytes(8).toString('hex')}`;
const NODES = ['n1', 'n2', 'n3'] as const;
/** Every fetch of this file gives up after this long: a hang fails the test, it does not stall it. */
const FETCH_MS = 5000;
let lab: ClusterLab;
let repo: Awaited<ReturnType<typeof greetRepository>>;
let lb: string;
let env: Record<string, string>;
const gateways: Record<string, LabNode> = {};

const figure = (name: string, value: unknown) => console.log(`cluster-figure ${name} ${JSON.stringify(value)}`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const timed = (init: RequestInit = {}): RequestInit => ({ ...init, signal: AbortSignal.timeout(FETCH_MS) });
const post = (url: string) => fetch(url, timed({ method: 'POST', body: '' }));
const healthOf = async (node: string) => {
  const answer = await fetch(`${lab.url(node)}/healthz`, timed());
  return { status: answer.status, body: (await answer.json()) as { status: string; cluster: Record<string, unknown> } };
};
const status = async (node: string) =>
  (await (await fetch(`${lab.url(node)}/api/cluster`, timed({ headers: { authorization: `Bearer ${TOKEN}` } }))).json()) as {
    builder: string | null;
    members: { name: string }[];
    live: { deployment: string } | null;
    acks: Record<string, { deployment: string; ok: boolean }>;
  };
/** The node HAProxy sends `/fn/<name>` to (a 404 for a function that does not exist is labelled too). */
const nodeOf = async (name: string) => (await post(`http://${lb}/fn/${name}`)).headers.get('x-fnix-node');
const remote = () => `http://fnix:${TOKEN}@${lb}/git/functions.git`;
/** How many times HAProxy has logged `server` (e.g. `fnix_nodes/n1`) going down. */
const downCount = async (server: string) =>
  ((await readFile(lab.haproxy.logFile, 'utf8').catch(() => '')).match(new RegExp(`Server ${server} is DOWN`, 'g')) ?? []).length;

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

/** The lines of `config`'s section `name` (`backend fnix_builder`), up to the next blank line. */
function section(config: string, name: string): string[] {
  const lines = config.split('\n');
  const from = lines.indexOf(name);
  if (from < 0) throw new Error(`the configuration has no ${name}:\n${config}`);
  const to = lines.findIndex((line, i) => i > from && line.trim() === '');
  return lines.slice(from, to < 0 ? undefined : to);
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
  await waitUntil(async () => (await status('n1')).members.length === 3, 20_000, 'the three members');
  // HAProxy runs on what the operator's command prints, asked of a real node (bin/fnix.mjs runs the compiled dist/cli/main.js).
  const cli = await execa('node', [join(PROJECT_ROOT, 'bin/fnix.mjs'), 'cluster', 'haproxy-config', '--bind', `${lb}:80`], {
    cwd: lab.dir,
    env: { FNIX_URL: lab.url('n1'), FNIX_TOKEN: TOKEN, HOME: lab.dir },
    timeout: 30_000,
    killSignal: 'SIGKILL',
  });
  const config = cli.stdout;
  const builderBackend = section(config, 'backend fnix_builder').join('\n');
  expect(builderBackend).toMatch(/^ {4}server n1 /m);
  expect(builderBackend).toMatch(/^ {4}server n2 /m);
  expect(builderBackend).not.toMatch(/server n3 /);
  for (const node of NODES) expect(section(config, 'backend fnix_nodes').join('\n')).toContain(`server ${node} ${lab.ip(node)}:8080`);
  await lab.startHaproxy(config);
  repo = await greetRepository(join(lab.dir, 'repo'), join(PROJECT_ROOT, 'functions/hello'));
  await waitUntil(async () => (await fetch(`http://${lb}/healthz`, timed()).catch(() => undefined))?.status === 200, 20_000, 'HAProxy to find a node');
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
      const answer = await post(`${lab.url(node)}/fn/greet`);
      expect(await answer.text()).toBe(`hi-${nonce}\n`);
      expect((await lab.run(node, ['nix-store', '--check-validity', expected], { reject: false })).exitCode, node).toBe(0);
    }
    expect(await gateways['n3']!.log()).toMatch(/store paths taken mode=shared added=\d+ refreshed=true/);
    // Not copied into n3's own upper layer: it reads it from the export.
    expect(existsSync(join(lab.host('n3').dir, 'upper/store', expected.slice('/nix/store/'.length)))).toBe(false);
  });

  it('keeps each function on one node through HAProxy, sessions included', async () => {
    const seen = new Set<string | null>();
    for (let i = 0; i < 12; i += 1) seen.add((await post(`http://${lb}/fn/greet/any/${i}`)).headers.get('x-fnix-node'));
    expect(seen.size).toBe(1);
    greetNode = [...seen][0]!;
    expect(NODES).toContain(greetNode);
    const session = await openSession(`http://${lb}`, '/sessions/greet');
    await session.waitFor('hi-');
    expect((await session.closed).status).toEqual({ exitCode: 0 });
    // The session ran on the node HAProxy picks for greet's requests: its record, gathered from any node, says where.
    const record = (await (
      await fetch(`${lab.url('n1')}/api/invocations/${session.invocationId}`, timed({ headers: { authorization: `Bearer ${TOKEN}` } }))
    ).json()) as {
      node: string;
    };
    expect(record.node).toBe(greetNode);
    // The 101 names its node too (the sessions' WebSocket server adds x-fnix-node to it).
    expect(session.node).toBe(greetNode);
    // Internal routes are for the nodes, not for clients.
    expect((await fetch(`http://${lb}/cluster/builder`, timed())).status).toBe(404);
  });

  it('fails only the requests in flight when a node dies under load, and moves the rest to the others without a hang', async () => {
    const server = `fnix_nodes/${greetNode}`;
    const downsBefore = await downCount(server);
    const running = load(`http://${lb}/fn/greet`, 8);
    try {
      await waitUntil(() => running.outcomes.filter((o) => o.status === 200 && o.node === greetNode).length >= 20, 20_000, `20 answers from ${greetNode}`);
      // The moment HAProxy marks the node down, from its log (raw lines carry no time: polled as they come).
      let downAt: number | undefined;
      const begin = performance.now();
      const watching = (async () => {
        while (downAt === undefined && performance.now() - begin < 15_000) {
          if ((await downCount(server)) > downsBefore) downAt = running.elapsedMs();
          else await sleep(20);
        }
      })();
      const killedAt = running.elapsedMs();
      await gateways[greetNode]!.kill();
      await watching;
      if (downAt === undefined) throw new Error(`HAProxy did not log "Server ${server} is DOWN" within 15 s of the kill; see ${lab.haproxy.logFile}`);
      // Requests go on for 2 s after that.
      await sleep(2000);
      const outcomes = await running.stop();
      const failed = outcomes.filter((o) => o.status !== 200);
      const starts = failed.map((o) => o.startMs - killedAt);
      figure('node-kill', {
        ...summary(outcomes),
        failedStartMsFromKill: failed.length ? { min: Math.round(Math.min(...starts)), max: Math.round(Math.max(...starts)) } : null,
        failureLongestMs: Math.round(Math.max(0, ...failed.map((o) => o.ms))),
        downAfterKillMs: Math.round(downAt - killedAt),
      });
      // Each failure fails fast; no request hangs (the load's own limit is 10 s).
      for (const failure of failed) expect(failure.ms, JSON.stringify(failure)).toBeLessThan(5000);
      expect(Math.max(...outcomes.map((o) => o.ms))).toBeLessThan(9000);
      // Every request that ended before the kill succeeded; each failure was in flight at the kill or started after it.
      expect(outcomes.filter((o) => o.startMs + o.ms < killedAt && o.status !== 200)).toEqual([]);
      expect(failed.filter((o) => o.startMs + o.ms < killedAt)).toEqual([]);
      // Once HAProxy took the node out, every request succeeded on another node.
      const afterDown = outcomes.filter((o) => o.startMs > downAt!);
      expect(afterDown.length).toBeGreaterThan(0);
      expect(afterDown.filter((o) => o.status !== 200 || o.node === greetNode)).toEqual([]);
    } finally {
      await running.stop();
      await lab.removeContainers(greetNode);
      await start(greetNode).waitHealthy(120_000);
      await waitUntil(async () => (await status('n1')).members.length === 3, 20_000, 'the node to rejoin');
    }
  }, 240_000);

  it('keeps serving without a pause when the etcd leader is killed, and a push meanwhile waits or fails clearly', async () => {
    const before = (await status('n1')).live!.deployment;
    const leader = (await lab.etcdLeader())!;
    expect(leader).toBeDefined();
    const running = load(`http://${lb}/fn/hello`, 4);
    let killed = false;
    try {
      await sleep(1000);
      const killedAt = running.elapsedMs();
      await lab.killEtcd(leader);
      killed = true;
      // The leaderless window: from the kill until the other two members have elected a new leader.
      const elected = (async () => {
        while (running.elapsedMs() - killedAt < 30_000) {
          if ((await lab.etcdLeader()) !== undefined) return running.elapsedMs();
          await sleep(20);
        }
        return undefined;
      })();
      const nonce = randomBytes(4).toString('hex');
      const pushBegin = performance.now();
      const pushed = await repo.push(remote(), nonce, `after-${nonce}`);
      const pushMs = performance.now() - pushBegin;
      if (pushed.exitCode !== 0) await repo.undo();
      const electedAt = await elected;
      await sleep(1000);
      const outcomes = await running.stop();
      const inWindow = outcomes.filter((o) => o.status === 200 && electedAt !== undefined && o.startMs + o.ms >= killedAt && o.startMs + o.ms <= electedAt);
      figure('etcd-leader-kill', {
        ...summary(outcomes),
        leaderlessMs: electedAt === undefined ? null : Math.round(electedAt - killedAt),
        answeredWhileLeaderless: inWindow.length,
        pushExit: pushed.exitCode ?? (pushed.timedOut ? 'timed out' : null),
        pushMs: Math.round(pushMs),
      });
      expect(electedAt, 'etcd elected no new leader within 30 s').toBeDefined();
      expect(summary(outcomes).failed).toBe(0);
      expect(inWindow.length).toBeGreaterThan(0);
      // Below etcd3's 5 s call deadline: no request waited on etcd.
      expect(summary(outcomes).longestMs).toBeLessThan(4000);
      // The push either went live everywhere, or was refused naming etcd and changed nothing.
      const deployed = /remote: all 3 node\(s\) live on (d-[\w-]+)/.exec(pushed.all ?? '')?.[1];
      const expectedLive = pushed.exitCode === 0 ? deployed : before;
      if (pushed.exitCode === 0) expect(deployed, pushed.all).toBeDefined();
      else expect(pushed.all).toMatch(/CLUSTER_UNAVAILABLE|etcd/);
      const live = (await status('n1')).live!.deployment;
      expect(live).toBe(expectedLive);
      // Nothing half-activated: every node serves the one live deployment.
      for (const node of NODES) await waitUntil(async () => (await healthOf(node)).body.cluster['serving'] === live, 20_000, `${node} to serve ${live}`);
    } finally {
      await running.stop();
      if (killed) await lab.restartEtcd(leader);
    }
  }, 180_000);

  it('has a node cut off from etcd keep serving, say it is stale (out of HAProxy when so configured), and catch up when healed', async () => {
    // Functions HAProxy sends to n3 (names that do not exist answer 404, labelled with the node all the same).
    const names = [...Array.from({ length: 20 }, (_, i) => `fn-${i}`), 'greet'];
    const homes = await Promise.all(names.map(async (name) => ({ name, node: await nodeOf(name) })));
    const onN3 = homes.filter((home) => home.node === 'n3').map((home) => home.name);
    expect(onN3.length, JSON.stringify(homes)).toBeGreaterThan(0);
    await lab.partition('n3', ['e1', 'e2', 'e3']);
    try {
      const cutAt = performance.now();
      // n3 runs with FNIX_CLUSTER_STALE=unhealthy: /healthz 503 once its lease's time (5 s) has passed.
      await waitUntil(async () => (await healthOf('n3')).status === 503, 20_000, 'n3 to say it is stale');
      figure('partition-stale-after-ms', Math.round(performance.now() - cutAt));
      expect((await healthOf('n3')).body).toMatchObject({ status: 'stale', cluster: { stale: true } });
      expect((await post(`${lab.url('n3')}/fn/hello`)).status).toBe(200);
      // HAProxy's checks take it out: its functions go to the others.
      await waitUntil(async () => (await Promise.all(onN3.map(nodeOf))).every((node) => node !== null && node !== 'n3'), 20_000, 'HAProxy to take n3 out');
      figure('partition-out-of-haproxy-after-ms', Math.round(performance.now() - cutAt));
      // A push meanwhile goes live on the others; n3, whose lease ran out, is not waited for.
      await waitUntil(async () => (await status('n1')).members.length === 2, 20_000, "n3's lease to run out");
      const nonce = randomBytes(4).toString('hex');
      const pushed = await repo.push(remote(), nonce, `cut-${nonce}`);
      expect(pushed.exitCode, pushed.all).toBe(0);
      expect(pushed.all).toMatch(/all 2 node\(s\) live/);
      expect(await (await post(`${lab.url('n3')}/fn/greet`)).text()).not.toContain(nonce);
      await lab.heal('n3');
      const healedAt = performance.now();
      await waitUntil(async () => (await (await post(`${lab.url('n3')}/fn/greet`)).text()).includes(nonce), 30_000, 'n3 to catch up');
      figure('partition-caught-up-after-heal-ms', Math.round(performance.now() - healedAt));
      await waitUntil(async () => (await healthOf('n3')).status === 200, 20_000, 'n3 to be healthy again');
      await waitUntil(async () => (await status('n1')).members.length === 3, 20_000, 'n3 to be a member again');
      expect((await status('n1')).members.map((m) => m.name).sort()).toEqual([...NODES]);
    } finally {
      await lab.heal('n3');
    }
  }, 180_000);

  it('fails a push clearly when the builder dies during it, elects another, and takes the next push there', async () => {
    const before = (await status('n2')).live!.deployment;
    const builder = (await status('n2')).builder!;
    const other = builder === 'n1' ? 'n2' : 'n1';
    const nonce = randomBytes(4).toString('hex');
    try {
      // Its build takes 6 s: the builder dies in the middle of it.
      let settled = false;
      const pushing = repo.push(remote(), nonce, `slow-${nonce}`, 6).finally(() => {
        settled = true;
      });
      // Building: the derivation's builder (`sh -c '… echo slow-<nonce> …'`) runs. `[s]low-` keeps pgrep off its own nsenter's argv.
      await waitUntil(
        async () => settled || (await lab.run(builder, ['pgrep', '-f', `[s]low-${nonce}`], { reject: false })).exitCode === 0,
        60_000,
        `${builder} to build greeting-${nonce}`,
      );
      expect(settled).toBe(false);
      await gateways[builder]!.kill();
      const killedAt = performance.now();
      const pushed = await pushing;
      figure('builder-kill-push-failed-after-ms', Math.round(performance.now() - killedAt));
      expect(pushed.exitCode).not.toBe(0);
      expect(pushed.all).toMatch(/remote end hung up|RPC failed|fatal:/);
      await repo.undo();
      await waitUntil(async () => (await status(other)).builder === other, 20_000, 'another builder');
      figure('builder-kill-reelected-after-ms', Math.round(performance.now() - killedAt));
      expect((await status(other)).live!.deployment).toBe(before);
      // HAProxy's check of /cluster/builder sends /git/ to the new builder.
      let polls = 0;
      const auth = `Basic ${Buffer.from(`fnix:${TOKEN}`).toString('base64')}`;
      await waitUntil(
        async () => {
          polls += 1;
          const answer = await fetch(`http://${lb}/git/functions.git/info/refs?service=git-receive-pack`, timed({ headers: { authorization: auth } }));
          await answer.arrayBuffer();
          return answer.status === 200 && answer.headers.get('x-fnix-node') === other;
        },
        20_000,
        `HAProxy to send /git/ to ${other}`,
      );
      figure('builder-kill-git-routed-after', { ms: Math.round(performance.now() - killedAt), polls });
      const next = randomBytes(4).toString('hex');
      const again = await repo.push(remote(), next, `next-${next}`);
      expect(again.exitCode, again.all).toBe(0);
      expect(again.all).toMatch(/all 2 node\(s\) live/);
    } finally {
      await lab.removeContainers(builder);
    }
  }, 240_000);
});
