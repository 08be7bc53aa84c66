/**
 * @module
 * The cluster's rows of `npm run bench` (`--only=cluster` runs them alone): fnix on several hosts, each
 * a network namespace and a mount namespace of this one machine (test/helpers/cluster/, the lab), with
 * three etcd members and HAProxy in front (cluster/haproxy.ts's configuration), in both store modes:
 * `shared` (every node's /nix/store an overlay over an sshfs mount of one export, NFS's stand-in) and
 * `cache` (every node's store its own, an overlay over this machine's local one, fed by the builder's
 * signed binary cache).
 * The rows, as the report numbers them:
 * (1) **A push going live on every node**: `git push` (through HAProxy) from its start to its return,
 *     which is after `all 3 node(s) live`, with the `remote: <node>: live on … (T s after the push)`
 *     lines parsed; each push has a new nonce, so new store paths to move. The floor is the same push to
 *     a plain gateway (no FNIX_CLUSTER_ETCD) on n4, a host of the same lab with the same store.
 * (2) **A cold start, network store against local store**: the first invocation with no container at
 *     all (FNIX_POOL_SIZE=0; each sample waits until no gateway has a container), the page cache dropped
 *     before each sample (machine-wide) so that the store's read is in it; python3 (a big package) and
 *     busybox's echo. It runs first, in two labs of one host each, made at once so that the two store
 *     modes' samples are taken in turns.
 * (3) **Warm p50 at concurrency 1 through HAProxy against straight to the node** that serves the function.
 * (4) **Throughput at concurrency 8 over six functions** (two on each node by HAProxy's hash, rotated by
 *     bench/wrk-rotate.lua) with three nodes behind HAProxy, against HAProxy pointing at one node.
 * (1), (3) and (4) run in one lab per store mode, one after the other, each with n1 (the builder), n2,
 * n3, and n4 for the floor.
 * In the shared labs every exec reads its program through sshfs, which the warm rows show (see
 * docs/performance.md, "Many hosts").
 * Every "host" shares this machine's cores: (4) shows the cluster's overhead and routing, not scale-out.
 * Everything the lab started is stopped (`lab.destroy()`) whatever happens.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { haproxyConfig, type HaproxyMember } from '../cluster/haproxy.ts';
import { ClusterLab } from '../test/helpers/cluster/lab.ts';
import type { StoreMode } from '../test/helpers/cluster/node-host.ts';
import { type LabNode, PROJECT_ROOT } from '../test/helpers/cluster/node.ts';
import { greetRepository } from '../test/helpers/cluster/workload.ts';
import { createClient, type Exchange } from './http.ts';
import type { Machine } from './report.ts';
import { summarize, type Summary } from './stats.ts';
import { combineRounds, runWrk, type WrkLoad, type WrkResult } from './wrk.ts';

/** How much of each row to run. */
export interface ClusterPlan {
  /** Timed pushes per store mode, to the cluster and to the single node each (after one untimed push that builds everything). */
  pushes: number;
  /** Cold samples of each function per store mode (after one untimed). */
  cold: number;
  /** Rounds of (3) and of (4), each taking both targets in turns. */
  rounds: number;
  c1Ms: number;
  c8Ms: number;
  /** wrk before each target's first round (3), and after each switch of HAProxy's configuration (4). */
  warmupMs: number;
}

export const CLUSTER_PLAN: ClusterPlan = { pushes: 5, cold: 5, rounds: 3, c1Ms: 2000, c8Ms: 3000, warmupMs: 2000 };
export const CLUSTER_QUICK_PLAN: ClusterPlan = { pushes: 1, cold: 1, rounds: 1, c1Ms: 1000, c8Ms: 1000, warmupMs: 1000 };

/** One timed push. */
export interface PushSample {
  /** `git push` from its start to its return. */
  ms: number;
  /** Cluster: `all N node(s) live on … in T s`, T in ms (counted from the start of going live, after the build and checks). */
  allLiveMs: number | null;
  /** Cluster: how many nodes that line counted. */
  nodes: number | null;
  /** Cluster: each node's `live on … (T s after the push)`, T in ms, from the same start. */
  nodeMs: Record<string, number>;
  /** Cluster: `store: N path(s) published (<mode>) in T s`. */
  published: { paths: number; ms: number } | null;
}

/** (1) for one store mode. */
export interface PushRows {
  single: PushSample[];
  cluster: PushSample[];
  /** The pushes' `ms`, summarised. */
  singleMs: Summary;
  clusterMs: Summary;
  /** cluster p50 / single p50. */
  ratioP50: number;
  /** Per node, the median of its `T s after the push` (ms). */
  nodeMsP50: Record<string, number>;
}

/** (2) for one store mode. */
export interface ColdRows {
  /** What the node's /nix/store is. */
  store: string;
  /** `python3 -c 'print(1)'`, time to first byte. */
  python: Summary;
  /** busybox's `echo hello`, time to first byte. */
  echo: Summary;
}

/** (3). */
export interface WarmRows {
  fn: string;
  node: string;
  lb: WrkResult;
  direct: WrkResult;
  /** lb p50 - direct p50, ms. */
  addedMs: number;
  /** lb p50 / direct p50. */
  ratio: number;
  /** Round by round, lb p50 - direct p50. */
  pairsMs: number[];
}

/** (4). */
export interface ThroughputRows {
  /** The functions rotated over, and the node HAProxy sends each to with three members. */
  functions: Record<string, string>;
  /** The one member of the other configuration. */
  oneNode: string;
  three: WrkResult;
  one: WrkResult;
  /** three req/s / one req/s. */
  ratio: number;
}

/** Everything the cluster's rows measured. */
export interface ClusterResult {
  plan: ClusterPlan;
  push: Record<StoreMode, PushRows>;
  cold: Record<StoreMode, ColdRows> & { pythonOverheadMs: number; pythonRatio: number; echoOverheadMs: number; echoRatio: number };
  warm: Record<StoreMode, WarmRows>;
  throughput: Record<StoreMode, ThroughputRows>;
  /** Each lab's wall time, creation to destruction (`cold`: the two labs of (2)). */
  labMs: Record<StoreMode | 'cold', number>;
}

/** What `npm run bench -- --only=cluster` writes. */
export interface ClusterOnlyReport {
  date: string;
  quick: boolean;
  only: 'cluster';
  machine: Machine;
  cluster: ClusterResult;
  wallMs: number;
}

const NODES = ['n1', 'n2', 'n3'] as const;
const MODES = ['shared', 'cache'] as const;
/** The plain gateway (no cluster) of the floor rows, on a host of the same lab with the same store. */
const SINGLE = 'n4';
/** The routing rows' functions: busybox's echo, six of them among these candidates, two on each node. */
const CANDIDATES = Array.from({ length: 12 }, (_, i) => `e${String(i + 1).padStart(2, '0')}`);
const HELLO = Buffer.from('hello\n');
const PYTHON_OUTPUT = Buffer.from('1\n');
const ECHO_FUNCTION = { packages: ['busybox'], command: ['echo', 'hello'] };
const STORE_OF: Record<StoreMode, string> = {
  shared: 'an overlay over an sshfs mount of the export',
  cache: "an overlay over this machine's local store",
};

type Say = (line: string) => void;
type Repo = Awaited<ReturnType<typeof greetRepository>>;

/** Runs every row; see the module's comment. */
export async function measureCluster(plan: ClusterPlan, say: Say): Promise<ClusterResult> {
  const began = performance.now();
  const cold = await coldStarts(plan, say);
  const coldMs = performance.now() - began;
  const shared = await inLab('shared', plan, say);
  const cache = await inLab('cache', plan, say);
  return {
    plan,
    push: { shared: shared.push, cache: cache.push },
    cold: {
      ...cold,
      pythonOverheadMs: cold.shared.python.p50 - cold.cache.python.p50,
      pythonRatio: cold.shared.python.p50 / cold.cache.python.p50,
      echoOverheadMs: cold.shared.echo.p50 - cold.cache.echo.p50,
      echoRatio: cold.shared.echo.p50 / cold.cache.echo.p50,
    },
    warm: { shared: shared.routing.warm, cache: cache.routing.warm },
    throughput: { shared: shared.routing.throughput, cache: cache.routing.throughput },
    labMs: { cold: coldMs, shared: shared.ms, cache: cache.ms },
  };
}

/**
 * (2): two small labs at once, one per store mode, each a single host (n4) with a plain gateway and no
 * pool (FNIX_POOL_SIZE=0), so that their samples can be taken in turns and the machine's drift weighs on
 * both alike. Each sample waits until neither gateway has a container (the last one's removal is over),
 * drops the page cache, then times the first byte.
 */
async function coldStarts(plan: ClusterPlan, say: Say): Promise<Record<StoreMode, ColdRows>> {
  say(`cluster: (2) cold starts, a lab of one host per store mode, python3 and echo in turns, the page cache dropped before each sample (machine-wide)`);
  const labs: Partial<Record<StoreMode, ClusterLab>> = {};
  try {
    for (const mode of MODES) labs[mode] = await ClusterLab.create({ store: mode, nodes: [SINGLE], builders: [], etcd: [] });
    const gateways = {} as Record<StoreMode, LabNode>;
    for (const mode of MODES) {
      const lab = labs[mode]!;
      const dir = join(lab.dir, 'cold-functions');
      await writeFunction(dir, 'py', { packages: ['python3'], command: ['python3', '-c', 'print(1)'] });
      await writeFunction(dir, 'echo', ECHO_FUNCTION);
      gateways[mode] = lab.startNode(SINGLE, { FNIX_FUNCTIONS_DIR: dir, FNIX_POOL_SIZE: '0', FNIX_IDLE_TTL_MS: '1000' });
    }
    await Promise.all(MODES.map((mode) => gateways[mode].waitHealthy(120_000)));
    const exchanges = (mode: StoreMode): Exchange[] => [
      { url: `${gateways[mode].url}/fn/py`, expected: PYTHON_OUTPUT },
      { url: `${gateways[mode].url}/fn/echo`, expected: HELLO },
    ];
    const taken = await measureCold(
      MODES.map((mode) => gateways[mode].url),
      MODES.flatMap((mode) => exchanges(mode)),
      plan.cold,
    );
    const bugs: string[] = [];
    for (const mode of MODES) {
      bugs.push(...(await gateways[mode].bugs()));
      await gateways[mode].stop();
    }
    if (bugs.length > 0) throw new Error(`a cold-start gateway logged ${bugs.length} unhandled error(s):\n${bugs.slice(0, 5).join('\n')}`);
    const [sharedPy, sharedEcho, cachePy, cacheEcho] = taken as [Summary, Summary, Summary, Summary];
    return {
      shared: { store: STORE_OF.shared, python: sharedPy, echo: sharedEcho },
      cache: { store: STORE_OF.cache, python: cachePy, echo: cacheEcho },
    };
  } catch (error) {
    for (const lab of Object.values(labs)) process.stderr.write(`bench: the cold-start lab's logs, at the failure:\n${await lab.logTails(3000)}\n`);
    throw error;
  } finally {
    await Promise.all(Object.values(labs).map((lab) => lab.destroy()));
  }
}

interface LabResult {
  push: PushRows;
  routing: { warm: WarmRows; throughput: ThroughputRows };
  ms: number;
}

/** One lab of `mode`: the single node's pushes, then the cluster's pushes, then (3) and (4). */
async function inLab(mode: StoreMode, plan: ClusterPlan, say: Say): Promise<LabResult> {
  const begin = performance.now();
  say(`cluster, ${mode} store: making the lab (network namespaces, ${mode === 'shared' ? "the store's sshfs export, " : ''}three etcd members)`);
  const lab = await ClusterLab.create({ store: mode, nodes: [...NODES, SINGLE], builders: ['n1'] });
  const bugs: string[] = [];
  const stop = async (gateway: LabNode) => {
    bugs.push(...(await gateway.bugs()).map((line) => `${gateway.name}: ${line}`));
    await gateway.stop();
  };
  try {
    const token = `bench-cluster-${randomBytes(8).toString('hex')}`;
    const helloDir = join(PROJECT_ROOT, 'functions/hello');

    say(`cluster, ${mode} store: (1) the floor, ${plan.pushes} pushes to a plain gateway on ${SINGLE} (no cluster)`);
    // An empty functions folder: nothing imported at the first start, so the repository is the pushes' alone.
    const noFunctions = join(lab.dir, 'no-functions');
    await mkdir(noFunctions, { recursive: true });
    const single = lab.startNode(SINGLE, { FNIX_TOKEN: token, FNIX_STATE_DIR: join(lab.host(SINGLE).dir, 'state-single'), FNIX_FUNCTIONS_DIR: noFunctions });
    await single.waitHealthy(120_000);
    const singleRepo = await greetRepository(join(lab.dir, 'repo-single'), helloDir);
    const singlePushes = await timedPushes(singleRepo, `http://fnix:${token}@${lab.ip(SINGLE)}:8080/git/functions.git`, plan.pushes, [single], 0, say);
    await stop(single);

    say(`cluster, ${mode} store: starting n1 (the builder), then n2 and n3, and HAProxy in front`);
    const secretsKey = randomBytes(32).toString('base64');
    const env: Record<string, string> = {
      FNIX_CLUSTER_ETCD: lab.etcdEndpoints().join(','),
      FNIX_TOKEN: token,
      FNIX_SECRETS_KEY: secretsKey,
      FNIX_CLUSTER_ACK_TIMEOUT: '30s',
      ...(mode === 'cache' ? await cacheKeys(lab.dir) : {}),
    };
    const start = (node: string) => lab.startNode(node, { ...env, ...lab.storeEnv(node), ...(node === 'n1' ? {} : { FNIX_BUILDER: 'false' }) });
    const n1 = start('n1');
    await n1.waitHealthy(120_000);
    const others = [start('n2'), start('n3')];
    await Promise.all(others.map((gateway) => gateway.waitHealthy(120_000)));
    const members: HaproxyMember[] = NODES.map((name) => ({ name, url: lab.url(name), builderEligible: name === 'n1' }));
    const lb = lab.ip('lb');
    const threeConfig = haproxyConfig({ members, bind: `${lb}:80` });
    await lab.startHaproxy(threeConfig);
    await waitFor(
      async () => (await fetch(`http://${lb}/healthz`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined))?.status === 200,
      20_000,
      'HAProxy to find a node',
    );
    await waitFor(async () => (await clusterStatus(lab.url('n1'), token)).members.length === NODES.length, 20_000, 'the three nodes to be members');
    // Pushes go to the builder, whose HAProxy check (/cluster/builder) must have passed.
    const refs = `http://${lb}/git/functions.git/info/refs?service=git-upload-pack`;
    const auth = { authorization: `Basic ${Buffer.from(`fnix:${token}`).toString('base64')}` };
    await waitFor(
      async () => (await fetch(refs, { headers: auth, signal: AbortSignal.timeout(2000) })).status === 200,
      20_000,
      "HAProxy's git backend to reach n1",
    );

    say(`cluster, ${mode} store: (1) ${plan.pushes} pushes through HAProxy, each going live on n1, n2 and n3`);
    const clusterRepo = await greetRepository(join(lab.dir, 'repo-cluster'), helloDir);
    const remote = `http://fnix:${token}@${lb}/git/functions.git`;
    const [n2, n3] = others as [LabNode, LabNode];
    const clusterPushes = await timedPushes(clusterRepo, remote, plan.pushes, [n1, n2, n3], NODES.length, say);

    const routing = await measureRouting(lab, clusterRepo, remote, { three: threeConfig, members, lb }, plan, say);
    for (const gateway of [n1, n2, n3]) await stop(gateway);
    if (bugs.length > 0) throw new Error(`a gateway of the cluster lab logged ${bugs.length} unhandled error(s):\n${bugs.slice(0, 5).join('\n')}`);
    return {
      push: pushRows(singlePushes, clusterPushes),
      routing,
      ms: performance.now() - begin,
    };
  } catch (error) {
    process.stderr.write(`bench: the cluster lab's logs, at the failure:\n${await lab.logTails(3000)}\n`);
    throw error;
  } finally {
    say(`cluster, ${mode} store: stopping the lab`);
    await lab.destroy();
  }
}

/** `count` timed pushes of a new nonce each, after one untimed; each checked on every one of `check` (its greet answers the new text). */
async function timedPushes(repo: Repo, remote: string, count: number, check: LabNode[], clusterNodes: number, say: Say): Promise<PushSample[]> {
  const samples: PushSample[] = [];
  for (let i = 0; i <= count; i += 1) {
    const nonce = randomBytes(4).toString('hex');
    const begin = performance.now();
    const pushed = await repo.push(remote, nonce, `hi-${nonce}`);
    const ms = performance.now() - begin;
    const all = String(pushed.all ?? '');
    if (pushed.exitCode !== 0) throw new Error(`bench: git push to ${remote.replace(/\/\/fnix:[^@]+@/, '//')} failed:\n${all}`);
    const sample = parsePush(all, ms);
    if (clusterNodes > 0 && sample.nodes !== clusterNodes) {
      throw new Error(`bench: the push did not say that all ${clusterNodes} nodes are live on it:\n${all}`);
    }
    for (const gateway of check) {
      const text = await (await fetch(`${gateway.url}/fn/greet`, { method: 'POST', body: '' })).text();
      if (text !== `hi-${nonce}\n`) throw new Error(`bench: after the push, ${gateway.name}'s greet answers ${JSON.stringify(text)}, not hi-${nonce}`);
    }
    if (i > 0) samples.push(sample);
    say(
      `  push ${i === 0 ? '(untimed, builds everything)' : `${i}/${count}`}: ${(ms / 1000).toFixed(2)} s${sample.allLiveMs === null ? '' : `; ${describeNodes(sample)}`}`,
    );
    // What a push leaves running (the old version's containers stopped, the pool refilled) settles first.
    await sleep(500);
  }
  return samples;
}

/** The figures of a push's `remote:` lines (cluster/go-live.ts's progress). */
export function parsePush(output: string, ms: number): PushSample {
  const nodeMs: Record<string, number> = {};
  for (const match of output.matchAll(/remote: (\S+): live on \S+ \(([\d.]+) s after the push\)/g)) nodeMs[match[1]!] = Number(match[2]) * 1000;
  const all = /remote: all (\d+) node\(s\) live on \S+ in ([\d.]+) s/.exec(output);
  const published = /remote: store: (\d+) path\(s\) published \(\w+\) in ([\d.]+) s/.exec(output);
  return {
    ms,
    allLiveMs: all ? Number(all[2]) * 1000 : null,
    nodes: all ? Number(all[1]) : null,
    nodeMs,
    published: published ? { paths: Number(published[1]), ms: Number(published[2]) * 1000 } : null,
  };
}

function describeNodes(sample: PushSample): string {
  const nodes = Object.entries(sample.nodeMs)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([node, ms]) => `${node} ${(ms / 1000).toFixed(1)}`)
    .join(', ');
  const store = sample.published ? `store published in ${(sample.published.ms / 1000).toFixed(1)} s; ` : '';
  return `${store}live (s after going live began): ${nodes}`;
}

function pushRows(single: PushSample[], cluster: PushSample[]): PushRows {
  const summary = (samples: PushSample[]) =>
    summarize(
      samples.map((s) => s.ms),
      samples.reduce((sum, s) => sum + s.ms, 0),
      0,
    );
  const singleMs = summary(single);
  const clusterMs = summary(cluster);
  const nodeMsP50: Record<string, number> = {};
  for (const node of new Set(cluster.flatMap((s) => Object.keys(s.nodeMs)))) {
    nodeMsP50[node] = summarize(
      cluster.map((s) => s.nodeMs[node]).filter((v): v is number => v !== undefined),
      0,
      0,
    ).p50;
  }
  return { single, cluster, singleMs, clusterMs, ratioP50: clusterMs.p50 / singleMs.p50, nodeMsP50 };
}

/**
 * (2): `samples` of each exchange in turns (the order reversed every other round), after one untimed
 * each. Each waits until no gateway of `gateways` has a container at all, drops the page cache
 * (machine-wide), then times the first byte.
 */
async function measureCold(gateways: string[], exchanges: Exchange[], samples: number): Promise<Summary[]> {
  // The functions are built at each gateway's start; the first answers tell they are deployed.
  for (const exchange of exchanges) {
    await waitFor(async () => (await fetch(exchange.url).catch(() => undefined))?.status === 200, 120_000, `${exchange.url} to be deployed`);
  }
  const taken = exchanges.map(() => ({ samples: [] as number[], errors: 0, wall: 0 }));
  for (let i = 0; i <= samples; i += 1) {
    const order = [...exchanges.keys()];
    if (i % 2 === 1) order.reverse();
    for (const k of order) {
      const exchange = exchanges[k]!;
      for (const url of gateways) await waitForEmptyPool(url);
      await dropPageCache();
      const client = createClient(1);
      const begin = performance.now();
      try {
        const { firstByteMs } = await client.send(exchange);
        if (i > 0) taken[k]!.samples.push(firstByteMs);
      } catch {
        if (i > 0) taken[k]!.errors += 1;
      } finally {
        if (i > 0) taken[k]!.wall += performance.now() - begin;
        client.close();
      }
    }
  }
  return taken.map(({ samples: s, wall, errors }) => summarize(s, wall, errors));
}

async function waitForEmptyPool(url: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const health = (await (await fetch(`${url}/healthz`)).json()) as { pool: { total: number } };
    if (health.pool.total === 0) return;
    if (Date.now() > deadline) throw new Error('bench: the cold gateway kept a container for 30 s; is FNIX_IDLE_TTL_MS honoured?');
    await sleep(50);
  }
}

/** `sync`, then `echo 3 > /proc/sys/vm/drop_caches`: the whole machine's page cache, dentries and inodes. */
async function dropPageCache(): Promise<void> {
  await execa('sync');
  await writeFile('/proc/sys/vm/drop_caches', '3\n');
}

/**
 * (3) and (4), on the cluster: a push adding the candidate functions, two of them per node chosen by
 * where HAProxy sends them, then wrk.
 */
async function measureRouting(
  lab: ClusterLab,
  repo: Repo,
  remote: string,
  haproxy: { three: string; members: HaproxyMember[]; lb: string },
  plan: ClusterPlan,
  say: Say,
): Promise<LabResult['routing']> {
  say(`cluster: a push adding ${CANDIDATES.length} copies of busybox's echo, to find two that HAProxy sends to each node`);
  for (const name of CANDIDATES) await writeFunction(join(repo.dir, 'functions'), name, ECHO_FUNCTION);
  const nonce = randomBytes(4).toString('hex');
  const pushed = await repo.push(remote, nonce, `hi-${nonce}`);
  if (pushed.exitCode !== 0 || !/all 3 node\(s\) live/.test(String(pushed.all)))
    throw new Error(`bench: the push of the echo functions failed:\n${pushed.all}`);
  const placed = new Map<string, string>();
  for (const name of CANDIDATES) placed.set(name, await servedBy(`http://${haproxy.lb}/fn/${name}`));
  const chosen: Record<string, string> = {};
  for (const node of NODES) for (const name of CANDIDATES.filter((n) => placed.get(n) === node).slice(0, 2)) chosen[name] = node;
  // Should the hash leave a node with fewer than two, the rest are taken as they come: the spread is reported.
  for (const name of CANDIDATES) if (Object.keys(chosen).length < 6 && !(name in chosen)) chosen[name] = placed.get(name)!;
  const names = Object.keys(chosen).sort();

  // (3): the first chosen function of n2 (not the builder), through HAProxy and straight to its node.
  const fn = names.find((n) => chosen[n] === 'n2') ?? names[0]!;
  const node = chosen[fn]!;
  const lbLoad: WrkLoad = { url: `http://${haproxy.lb}/fn/${fn}`, expected: HELLO };
  const directLoad: WrkLoad = { url: `${lab.url(node)}/fn/${fn}`, expected: HELLO };
  say(`cluster: (3) warm, concurrency 1, /fn/${fn} through HAProxy and straight to ${node}, ${plan.rounds} round(s) in turns`);
  await runWrk(lbLoad, 1, plan.warmupMs);
  await runWrk(directLoad, 1, plan.warmupMs);
  const lbRounds: WrkResult[] = [];
  const directRounds: WrkResult[] = [];
  for (let r = 0; r < plan.rounds; r += 1) {
    const order = r % 2 === 0 ? (['lb', 'direct'] as const) : (['direct', 'lb'] as const);
    for (const which of order) {
      if (which === 'lb') lbRounds.push(await runWrk(lbLoad, 1, plan.c1Ms));
      else directRounds.push(await runWrk(directLoad, 1, plan.c1Ms));
    }
  }
  const lbWarm = combineRounds(lbRounds);
  const directWarm = combineRounds(directRounds);

  // (4): six functions rotated, at concurrency 8: HAProxy with three members, and with n1 alone.
  const oneNode = 'n1';
  const oneConfig = haproxyConfig({ members: haproxy.members.filter((m) => m.name === oneNode), bind: `${haproxy.lb}:80` });
  const rotate: WrkLoad = { url: `http://${haproxy.lb}/`, expected: HELLO, paths: names.map((n) => `/fn/${n}`) };
  say(
    `cluster: (4) concurrency 8 over ${names.map((n) => `${n} (${chosen[n]})`).join(', ')}: three nodes, and HAProxy pointing at ${oneNode} alone, ${plan.rounds} round(s) in turns`,
  );
  const rounds: Record<'three' | 'one', WrkResult[]> = { three: [], one: [] };
  let current: 'three' | 'one' = 'three';
  for (let r = 0; r < plan.rounds; r += 1) {
    const order = r % 2 === 0 ? (['three', 'one'] as const) : (['one', 'three'] as const);
    for (const which of order) {
      if (which !== current) {
        await lab.reloadHaproxy(which === 'three' ? haproxy.three : oneConfig);
        current = which;
      }
      // Every function answers, from the node this configuration sends it to.
      await waitFor(
        async () => {
          for (const name of names)
            if ((await servedBy(`http://${haproxy.lb}/fn/${name}`).catch(() => '')) !== (which === 'one' ? oneNode : chosen[name])) return false;
          return true;
        },
        20_000,
        `HAProxy to route as its ${which === 'three' ? 'three-member' : 'one-member'} configuration says`,
      );
      await runWrk(rotate, 8, plan.warmupMs);
      rounds[which].push(await runWrk(rotate, 8, plan.c8Ms));
    }
  }
  if (current !== 'three') await lab.reloadHaproxy(haproxy.three);
  const three = combineRounds(rounds.three);
  const one = combineRounds(rounds.one);
  return {
    warm: {
      fn,
      node,
      lb: lbWarm,
      direct: directWarm,
      addedMs: lbWarm.p50 - directWarm.p50,
      ratio: lbWarm.p50 / directWarm.p50,
      pairsMs: lbRounds.map((round, i) => round.p50 - directRounds[i]!.p50),
    },
    throughput: { functions: Object.fromEntries(names.map((n) => [n, chosen[n]!])), oneNode, three, one, ratio: three.rps / one.rps },
  };
}

/** The node that answered a GET of `url` (its x-fnix-node), checking the answer. */
async function servedBy(url: string): Promise<string> {
  const answer = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  const body = await answer.text();
  if (answer.status !== 200 || body !== HELLO.toString()) throw new Error(`bench: GET ${url} answered ${answer.status} ${JSON.stringify(body.slice(0, 200))}`);
  return answer.headers.get('x-fnix-node') ?? '?';
}

async function clusterStatus(url: string, token: string): Promise<{ members: { name: string }[] }> {
  const answer = await fetch(`${url}/api/cluster`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(3000) });
  return (await answer.json()) as { members: { name: string }[] };
}

/** A binary cache key pair in `dir`: the builder signs with the secret one, every node checks with the public one. */
async function cacheKeys(dir: string): Promise<Record<string, string>> {
  const secret = join(dir, 'bench-cache-1.sk');
  const publicFile = join(dir, 'bench-cache-1.pk');
  await execa('nix-store', ['--generate-binary-cache-key', 'bench-cache-1', secret, publicFile]);
  return { FNIX_CACHE_SECRET_KEY_FILE: secret, FNIX_CACHE_PUBLIC_KEY: (await readFile(publicFile, 'utf8')).trim() };
}

async function writeFunction(functionsDir: string, name: string, manifest: object): Promise<void> {
  await mkdir(join(functionsDir, name), { recursive: true });
  await writeFile(join(functionsDir, name, 'function.json'), `${JSON.stringify(manifest)}\n`);
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`bench: waited ${timeoutMs / 1000} s for ${what}`);
    await sleep(100);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The rows as text, for the benchmark's report. */
export function formatCluster(result: ClusterResult, cpus: number): string[] {
  const { push, cold, warm, throughput } = result;
  const lines = [
    '',
    `many hosts: fnix nodes in network namespaces of this one machine (test/helpers/cluster/), three etcd members, HAProxy in front.`,
    `  Every "host" shares this machine's ${cpus} cores: no row below is scale-out.`,
    '',
    '(1) a push going live: git push from its start to its return (after every node acknowledged), a new store path each time;',
    '    the floor is the same push to a plain gateway (no cluster) on a host of the same lab, with the same store',
    table(
      ['store', 'push to', 'n', 'p50 s', 'max s', 'ratio p50'],
      (['shared', 'cache'] as const).flatMap((mode) => [
        [mode, 'one node, no cluster', String(push[mode].single.length), s(push[mode].singleMs.p50), s(push[mode].singleMs.max), ''],
        [
          mode,
          '3 nodes, through HAProxy',
          String(push[mode].cluster.length),
          s(push[mode].clusterMs.p50),
          s(push[mode].clusterMs.max),
          `${push[mode].ratioP50.toFixed(2)}x`,
        ],
      ]),
      [8, 26, 3, 7, 7, 9],
    ),
  ];
  for (const mode of ['shared', 'cache'] as const) {
    const rows = push[mode];
    const nodes = Object.entries(rows.nodeMsP50)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([node, ms]) => `${node} ${s(ms)}`)
      .join(', ');
    const allLive = rows.cluster.map((p) => p.allLiveMs).filter((v): v is number => v !== null);
    const published = rows.cluster.map((p) => p.published?.ms).filter((v): v is number => v !== undefined);
    lines.push(
      `  ${mode}: from going live (after the build and checks) to each node's acknowledgement, p50 s: ${nodes}; to the last: ${allLive.map(s).join(' ')} s; the store published in ${published.map(s).join(' ')} s`,
    );
  }
  lines.push(
    '',
    `(2) cold start, time to first byte with no container (FNIX_POOL_SIZE=0), the page cache dropped machine-wide before each sample:`,
    table(
      ['store', "the node's /nix/store", 'function', 'n', 'p50 ms', 'max ms', 'errors'],
      (['shared', 'cache'] as const).flatMap((mode) => [
        [
          mode,
          cold[mode].store,
          "python3 -c 'print(1)'",
          String(cold[mode].python.n),
          ms(cold[mode].python.p50),
          ms(cold[mode].python.max),
          String(cold[mode].python.errors),
        ],
        [mode, '', 'echo hello (busybox)', String(cold[mode].echo.n), ms(cold[mode].echo.p50), ms(cold[mode].echo.max), String(cold[mode].echo.errors)],
      ]),
      [8, 45, 22, 3, 7, 7, 6],
      3,
    ),
    `  the network store's overhead, p50: python3 ${signed(cold.pythonOverheadMs)} ms (${cold.pythonRatio.toFixed(2)}x), echo ${signed(cold.echoOverheadMs)} ms (${cold.echoRatio.toFixed(2)}x)`,
    '',
    `(3) warm, wrk at concurrency 1 (every response checked), a busybox echo function (${(['shared', 'cache'] as const).map((mode) => `${mode}: /fn/${warm[mode].fn}`).join(', ')}):`,
    table(
      ['store', 'target', 'requests', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'errors'],
      (['shared', 'cache'] as const).flatMap((mode) => {
        const w = warm[mode];
        return [
          [mode, 'through HAProxy', String(w.lb.requests), ms(w.lb.p50), ms(w.lb.p90), ms(w.lb.p99), ms(w.lb.max), String(w.lb.errors)],
          [
            mode,
            `straight to ${w.node}`,
            String(w.direct.requests),
            ms(w.direct.p50),
            ms(w.direct.p90),
            ms(w.direct.p99),
            ms(w.direct.max),
            String(w.direct.errors),
          ],
        ];
      }),
      [8, 22, 9, 7, 7, 7, 7, 6],
    ),
    ...(['shared', 'cache'] as const).map(
      (mode) =>
        `  ${mode}: HAProxy adds ${signed(warm[mode].addedMs)} ms at p50 (${warm[mode].ratio.toFixed(2)}x); round by round: ${warm[mode].pairsMs.map(signed).join(' ')} ms`,
    ),
    '',
    "(4) throughput, wrk at concurrency 8 over six busybox echo functions in turn, two on each node by HAProxy's hash:",
    ...(['shared', 'cache'] as const).map(
      (mode) =>
        `  ${mode}: ${Object.entries(throughput[mode].functions)
          .map(([fn, node]) => `${fn} on ${node}`)
          .join(', ')}`,
    ),
    table(
      ['store', 'behind HAProxy', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'errors', 'ratio'],
      (['shared', 'cache'] as const).flatMap((mode) => {
        const t = throughput[mode];
        return [
          [mode, 'three nodes', t.three.rps.toFixed(0), ms(t.three.p50), ms(t.three.p99), ms(t.three.max), String(t.three.errors), `${t.ratio.toFixed(2)}x`],
          [mode, `${t.oneNode} alone`, t.one.rps.toFixed(0), ms(t.one.p50), ms(t.one.p99), ms(t.one.max), String(t.one.errors), ''],
        ];
      }),
      [8, 22, 7, 7, 7, 7, 6, 6],
    ),
    `  ratio: three nodes / one. The three "hosts" share this machine's ${cpus} cores, so it shows the cluster's overhead and routing, not scale-out.`,
    `  (labs: cold starts ${s(result.labMs.cold)} s, shared ${s(result.labMs.shared)} s, cache ${s(result.labMs.cache)} s)`,
  );
  return lines;
}

/** Columns of `widths`; the first `left` of them left-aligned, the others right-aligned. */
function table(header: string[], rows: string[][], widths: number[], left = 2): string {
  const line = (cells: string[]) => `  ${cells.map((cell, i) => (i < left ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join(' ')}`.trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

function ms(value: number): string {
  if (!Number.isFinite(value)) return '-';
  return value < 10 ? value.toFixed(2) : value < 100 ? value.toFixed(1) : value.toFixed(0);
}

function s(valueMs: number): string {
  return Number.isFinite(valueMs) ? (valueMs / 1000).toFixed(2) : '-';
}

function signed(value: number): string {
  if (!Number.isFinite(value)) return '-';
  return `${value < 0 ? '-' : '+'}${ms(Math.abs(value))}`;
}

/** `--only=cluster`'s report as text. */
export function formatClusterOnlyReport(report: ClusterOnlyReport): string {
  const m = report.machine;
  const lines = [
    `fnix benchmark ${report.date}, the cluster only${report.quick ? ' (quick: too few samples to judge)' : ''}`,
    `${m.cpus} x ${m.cpuModel}, ${(m.memoryBytes / 1024 ** 3).toFixed(0)} GiB, Linux ${m.kernel}, Node ${m.node}, Podman ${m.podman}`,
    ...formatCluster(report.cluster, m.cpus),
    '',
    `finished in ${(report.wallMs / 1000).toFixed(0)} s`,
  ];
  return `${lines.join('\n')}\n`;
}
