/**
 * @module
 * `npm run bench`: fnix side by side with the ways it could have been built, in one run on one machine,
 * for a trivial function (prints one line) and an echo of a 64 KiB body:
 *   (a) floor: the command spawned on the host; (b) naive: `podman run --rm` per request;
 *   (c) `podman exec` per request into a running container; (d) fnix warm, through the gateway, at
 *   concurrency 1 and 8; (e) fnix cold, time to first byte with no warm container; (f) the pool's refill
 *   rate; and the gateway's memory over a long soak of the trivial function at concurrency 8, with npm
 *   start's Node flags and, to show what they bound, with Node's defaults.
 * Beside them, a large closure on the warm path (bench/closure.ts): python3 through fnix warm against the
 * same interpreter spawned on the host, `echo hello` with busybox's closure against the same with python3's
 * and imagemagick's, the store mounts of every warm container (bench/store-mounts.ts), and the cold start
 * of the python3 + imagemagick function in turns with the busybox function's.
 * Then serve functions (bench/serve.ts), in a gateway of their own: a Python and a Node.js "hello" handler
 * as a process per request, as a serve function through fnix, and as the same server on the host; the
 * first request after a deploy; the gateway's memory under Node's handler at concurrency 8.
 * Prints a table and the targets, and writes the same as JSON under bench-results/.
 * `--quick` runs a few requests of each, to check that the benchmark works (the test suite does).
 * `--only=serve` runs the serve functions' rows alone (their own report, JSON included).
 * Last, the cluster's rows (bench/cluster.ts): three fnix hosts in network namespaces of this machine,
 * behind HAProxy, per store mode; `--only=cluster` runs them alone. A `--quick` run of everything leaves
 * them out (they take minutes of labs and pushes); `--only=cluster --quick` runs them briefly.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { BUG_PREFIX } from '../gateway/process-guards.ts';
import { removeContainers } from '../runtime/podman/remove.ts';
import { measureClosure, PYTHON_OUTPUT, type ClosureWarmResult } from './closure.ts';
import {
  CLUSTER_PLAN,
  CLUSTER_QUICK_PLAN,
  formatCluster,
  formatClusterOnlyReport,
  measureCluster,
  type ClusterOnlyReport,
  type ClusterResult,
} from './cluster.ts';
import { startGatewayProcess, sampleRss, type GatewayProcess } from './gateway-process.ts';
import { prepareHost, removeBenchContainers, removeInstanceContainers, startExecTarget, type BenchHost } from './host.ts';
import { createClient, type Exchange } from './http.ts';
import { measureRefill, type RefillRound } from './refill.ts';
import { measureSideBySide, type SideBySideResult, type SideBySideWorkload } from './side-by-side.ts';
import {
  formatReport,
  formatServeOnlyReport,
  judgeServeTargets,
  judgeTargets,
  type BenchReport,
  type ClosureReport,
  type Machine,
  type ServeOnlyReport,
  type ServeReport,
  type SoakResult,
  type WorkloadResults,
} from './report.ts';
import { measureServe, SERVE_FUNCTIONS, SERVE_TOKEN, type ServePlan } from './serve.ts';
import { runToEnd } from './spawn.ts';
import { measure, summarize, type Summary } from './stats.ts';
import { inspectStoreMounts, type StoreMounts } from './store-mounts.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BENCH_FUNCTIONS = join(ROOT, 'bench/functions');
const quick = process.argv.includes('--quick');
/** `--profile`: the warm gateway and the serve rows' gateway run with --cpu-prof, their profiles written to bench-results/profile/ (bench/profile-summary.ts reads them). */
const profile = process.argv.includes('--profile');
const outArg = process.argv.find((a) => a.startsWith('--out='));
/** `--only=serve`: the serve functions' rows alone; `--only=cluster`: the cluster's. */
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
if (only !== undefined && only !== 'serve' && only !== 'cluster') {
  process.stderr.write(`bench: --only=${only}: the rows that run alone are serve (--only=serve) and cluster (--only=cluster)\n`);
  process.exit(2);
}

/** How much of each scenario to run. */
const PLAN = quick
  ? { floor: 20, naive: 2, exec: 3, warm1: 50, warm8Ms: 1000, cold: 2, warmup: 20, refillRounds: 1, soakMs: 2000 }
  : { floor: 300, naive: 12, exec: 20, warm1: 2000, warm8Ms: 10_000, cold: 15, warmup: 300, refillRounds: 3, soakMs: 120_000 };
/** The side-by-side rows: rounds of wrk at concurrency 1 and 8 against the floor server and fnix, in turns. */
const SIDE_BY_SIDE_PLAN = quick ? { rounds: 1, c1Ms: 1000, c8Ms: 1000, warmupMs: 1000 } : { rounds: 3, c1Ms: 5000, c8Ms: 10_000, warmupMs: 2000 };
/** The large closure's rows (bench/closure.ts): one request at a time, in many short rounds taken in turns. */
const CLOSURE_PLAN = quick ? { rounds: 1, c1Ms: 1000, warmupMs: 1000 } : { rounds: 12, c1Ms: 1000, warmupMs: 2000 };
const REFILL_SIZE = 8;
/** The serve functions' rows (bench/serve.ts): rounds of (ii) and (iii) in turns, at concurrency 1 and 8, (i) in each; pushes per language. */
const SERVE_PLAN: ServePlan = quick
  ? { rounds: 1, c1Ms: 1000, c8Ms: 1000, perProcessMs: 1000, warmupMs: 0, deploys: 1 }
  : { rounds: 6, c1Ms: 2000, c8Ms: 3000, perProcessMs: 2000, warmupMs: 3000, deploys: 8 };

interface Workload {
  key: 'trivial' | 'echo64k';
  /** The function in bench/functions. */
  fn: string;
  /** The same command, as busybox applet argv. */
  applet: string[];
  input: Buffer | undefined;
  expected: Buffer;
}

const BODY = randomBytes(64 * 1024);
/** The JSON filter's input: a 1.5 KB document, pretty-printed, which `gojq -c .` prints on one line. */
const JSON_DOC = {
  id: 1,
  name: 'fnix',
  tags: ['a', 'b', 'c'],
  items: Array.from({ length: 20 }, (_, k) => ({ k, v: 'x'.repeat(10), ok: k % 2 === 0 })),
};
/** gojq prints object keys sorted. */
const sortedKeys = (value: unknown): unknown =>
  Array.isArray(value)
    ? value.map(sortedKeys)
    : value && typeof value === 'object'
      ? Object.fromEntries(
          Object.keys(value)
            .sort()
            .map((key) => [key, sortedKeys((value as Record<string, unknown>)[key])]),
        )
      : value;
const SIDE_BY_SIDE: SideBySideWorkload[] = [
  { key: 'trivial', fn: 'line', command: (host) => [`${host.busybox}/bin/echo`, 'hello'], body: undefined, expected: Buffer.from('hello\n') },
  {
    key: 'json',
    fn: 'jq',
    command: (host) => [`${host.gojq}/bin/gojq`, '-c', '.'],
    body: Buffer.from(JSON.stringify(JSON_DOC, null, 2)),
    expected: Buffer.from(`${JSON.stringify(sortedKeys(JSON_DOC))}\n`),
  },
];
const WORKLOADS: Workload[] = [
  { key: 'trivial', fn: 'line', applet: ['echo', 'hello'], input: undefined, expected: Buffer.from('hello\n') },
  { key: 'echo64k', fn: 'cat', applet: ['cat'], input: BODY, expected: BODY },
];

async function main(): Promise<void> {
  const began = Date.now();
  const stateRoot = await mkdtemp(join(tmpdir(), 'fnix-bench-'));
  const resultsDir = resolve(ROOT, 'bench-results');
  await mkdir(resultsDir, { recursive: true });
  const logFile = join(resultsDir, 'gateway.log');
  await writeFile(logFile, '');
  const say = (line: string) => process.stderr.write(`bench: ${line}\n`);
  let prepared: BenchHost | undefined;
  try {
    say('compiling the gateway, preparing the agent, the rootfs and busybox');
    await execa('bash', ['scripts/build.sh'], { cwd: ROOT, stdio: 'inherit' });
    const host = await prepareHost(join(stateRoot, 'host'));
    prepared = host;
    await removeBenchContainers(host.podman);
    const profileArgs = profile ? ['--cpu-prof', `--cpu-prof-dir=${join(resultsDir, 'profile')}`] : [];
    if (only === 'serve') {
      const serve = await measureServeRows(host, stateRoot, logFile, profileArgs, say);
      const report: ServeOnlyReport = {
        date: new Date().toISOString(),
        quick,
        only: 'serve',
        machine: await machineOf(host),
        serve,
        wallMs: Date.now() - began,
      };
      await writeReport(report, formatServeOnlyReport(report), resultsDir, logFile);
      return;
    }
    if (only === 'cluster') {
      const cluster = await measureCluster(quick ? CLUSTER_QUICK_PLAN : CLUSTER_PLAN, say);
      const report: ClusterOnlyReport = {
        date: new Date().toISOString(),
        quick,
        only: 'cluster',
        machine: await machineOf(host),
        cluster,
        wallMs: Date.now() - began,
      };
      await writeReport(report, formatClusterOnlyReport(report), resultsDir, logFile);
      return;
    }
    const results = Object.fromEntries(WORKLOADS.map((w) => [w.key, {} as WorkloadResults])) as Record<Workload['key'], WorkloadResults>;

    for (const w of WORKLOADS) {
      say(`${w.key}: (a) floor, host spawn`);
      results[w.key].floor = await measure(() => runToEnd(binary(host, w), w.input, w.expected), { concurrency: 1, requests: PLAN.floor });
    }

    say('starting a gateway with a warm pool');
    const warm = await startGatewayProcess({ FNIX_STATE_DIR: join(stateRoot, 'warm'), FNIX_FUNCTIONS_DIR: BENCH_FUNCTIONS }, logFile, profileArgs);
    let rssIdle = 0;
    let rssPeak = 0;
    let soaks: { flags: SoakResult; defaults: SoakResult } | undefined;
    let sideBySide: Record<string, SideBySideResult> = {};
    let closure: ClosureWarmResult | undefined;
    let storeMounts: StoreMounts | undefined;
    try {
      rssIdle = await warm.rss();
      const rss = sampleRss(warm.pid);
      for (const w of WORKLOADS) {
        await measureWarm(warm, w, results[w.key], say);
      }
      rssPeak = await rss.stop();
      say('side by side with the floor server, on the host and in a container, by wrk');
      sideBySide = await measureSideBySide(host, join(stateRoot, 'host'), warm, SIDE_BY_SIDE, SIDE_BY_SIDE_PLAN, say);
      say('a large closure on the warm path: python3 against its own start on the host, echo with and without python3 + imagemagick');
      closure = await measureClosure(host, join(stateRoot, 'host'), warm.url, CLOSURE_PLAN, say);
      // Right after those rows, while the containers that served them are warm.
      storeMounts = await inspectStoreMounts(host.podman, join(stateRoot, 'warm'));
      say(`trivial: the gateway's memory over a soak of ${PLAN.soakMs / 1000} s at concurrency 8, against one with Node's default heap settings, in turns`);
      const defaults = await startGatewayProcess(
        { FNIX_STATE_DIR: join(stateRoot, 'defaults'), FNIX_FUNCTIONS_DIR: BENCH_FUNCTIONS },
        logFile,
        [],
        ['--enable-source-maps'],
      );
      try {
        soaks = await soakInTurns(warm, defaults, WORKLOADS[0]!);
      } finally {
        await defaults.stop();
      }
    } finally {
      await warm.stop();
    }

    const serve = await measureServeRows(host, stateRoot, logFile, profileArgs, say);

    say('starting a gateway with no warm pool');
    const cold = await startGatewayProcess(
      { FNIX_STATE_DIR: join(stateRoot, 'cold'), FNIX_FUNCTIONS_DIR: BENCH_FUNCTIONS, FNIX_POOL_SIZE: '0', FNIX_IDLE_TTL_MS: '1000' },
      logFile,
    );
    let coldLarge: Summary | undefined;
    try {
      say('trivial: (e) fnix cold, time to first byte, in turns with the python3 + imagemagick function');
      const [trivial, echo64k] = WORKLOADS as [Workload, Workload];
      const python: Exchange = { url: `${cold.url}/fn/python`, expected: PYTHON_OUTPUT };
      [results.trivial.cold, coldLarge] = (await measureCold(cold, [exchangeOf(cold, trivial), python])) as [Summary, Summary];
      say('echo64k: (e) fnix cold, time to first byte');
      [results.echo64k.cold] = (await measureCold(cold, [exchangeOf(cold, echo64k)])) as [Summary];
    } finally {
      await cold.stop();
    }

    say(`(f) the pool's refill rate, ${REFILL_SIZE} containers`);
    const refill = await measureRefill(host, join(stateRoot, 'host'), REFILL_SIZE, PLAN.refillRounds);

    const target = await startExecTarget(host);
    try {
      for (const w of WORKLOADS) {
        say(`${w.key}: (c) podman exec per request`);
        const argv = [...podmanArgv(host), 'exec', '-i', target, ...binary(host, w)];
        results[w.key].exec = await measure(() => runToEnd(argv, w.input, w.expected), { concurrency: 1, requests: PLAN.exec });
      }
    } finally {
      await removeContainers(host.podman, [target]);
    }
    for (const w of WORKLOADS) {
      say(`${w.key}: (b) naive, podman run --rm per request`);
      const argv = [...podmanArgv(host), 'run', '--rm', '-i', ...host.containerArgs, '--rootfs', host.rootfs, ...binary(host, w)];
      results[w.key].naive = await measure(() => runToEnd(argv, w.input, w.expected), { concurrency: 1, requests: PLAN.naive });
    }

    let cluster: ClusterResult | undefined;
    if (quick) say('the cluster rows are left out of a quick run of everything (npm run bench -- --only=cluster --quick runs them briefly)');
    else cluster = await measureCluster(CLUSTER_PLAN, say);

    const report = await buildReport(
      results,
      sideBySide,
      { ...closure!, storeMounts: storeMounts!, cold: { busybox: results.trivial.cold, large: coldLarge! } },
      refill,
      { rssIdle, rssPeak, soak: soaks!.flags, soakDefaults: soaks!.defaults },
      serve,
      host,
      Date.now() - began,
    );
    await writeReport(
      cluster ? { ...report, cluster } : report,
      cluster ? withClusterRows(formatReport(report), cluster, report.machine.cpus) : formatReport(report),
      resultsDir,
      logFile,
    );
  } finally {
    // Whatever failed, nothing of the run is left: the gateways' containers (a gateway stopped by
    // SIGKILL cannot remove its own), the refill pool's, then the state folders.
    if (prepared) {
      const { podman } = prepared;
      for (const dir of ['warm', 'defaults', 'cold', 'serve', 'host/refill']) await removeInstanceContainers(podman, join(stateRoot, dir)).catch(() => {});
      await removeBenchContainers(podman).catch(() => {});
    }
    await rm(stateRoot, { recursive: true, force: true }).catch((error: unknown) => say(`could not remove ${stateRoot}: ${String(error)}`));
  }
}

/** Writes `report` as JSON (to --out, else under `resultsDir`), prints `text`, and fails on a bug a gateway logged. */
async function writeReport(
  report: (BenchReport & { cluster?: ClusterResult }) | ServeOnlyReport | ClusterOnlyReport,
  text: string,
  resultsDir: string,
  logFile: string,
): Promise<void> {
  const file = outArg ? resolve(outArg.slice('--out='.length)) : join(resultsDir, `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(text);
  process.stdout.write(`\nJSON: ${file}\nGateway log: ${logFile}\n`);
  // A gateway that caught a bug kept going, as it must; the benchmark reports it as the failure it is.
  const bugs = (await readFile(logFile, 'utf8')).split('\n').filter((line) => line.includes(`ERROR ${BUG_PREFIX}`));
  if (bugs.length > 0) throw new Error(`a gateway logged ${bugs.length} unhandled error(s):\n${bugs.slice(0, 5).join('\n')}`);
}

/** The report's text with the cluster's rows before its last line (the run's duration). */
function withClusterRows(text: string, cluster: ClusterResult, cpus: number): string {
  const end = text.lastIndexOf('\nfinished in ');
  return `${text.slice(0, end)}\n${formatCluster(cluster, cpus).join('\n')}${text.slice(end)}`;
}

/** The serve functions' rows (bench/serve.ts), in a gateway of their own serving bench/serve-functions, judged. */
async function measureServeRows(host: BenchHost, stateRoot: string, logFile: string, profileArgs: string[], say: (line: string) => void): Promise<ServeReport> {
  say('serve functions: starting a gateway with python and node "hello" handlers, per request and as servers');
  const workDir = join(stateRoot, 'serve-work');
  await mkdir(workDir, { recursive: true });
  const gateway = await startGatewayProcess(
    { FNIX_STATE_DIR: join(stateRoot, 'serve'), FNIX_FUNCTIONS_DIR: SERVE_FUNCTIONS, FNIX_TOKEN: SERVE_TOKEN },
    logFile,
    profileArgs,
  );
  try {
    const serve = await measureServe(host, gateway, workDir, SERVE_PLAN, say);
    return { ...serve, targets: judgeServeTargets(serve) };
  } finally {
    await gateway.stop();
  }
}

/** (d): warm-up, then concurrency 1 for a count of requests and concurrency 8 for a while. */
async function measureWarm(gateway: GatewayProcess, w: Workload, into: WorkloadResults, say: (line: string) => void): Promise<void> {
  const exchange = { url: `${gateway.url}/fn/${w.fn}`, body: w.input, expected: w.expected };
  const client = createClient(8);
  try {
    // Warm-up: containers specialised for the function, connections open, code paths compiled.
    await measure(() => client.send(exchange), { concurrency: 8, requests: PLAN.warmup });
    say(`${w.key}: (d) fnix warm, concurrency 1`);
    into.warm1 = await measure(() => client.send(exchange), { concurrency: 1, requests: PLAN.warm1 });
    say(`${w.key}: (d) fnix warm, concurrency 8`);
    into.warm8 = await measure(() => client.send(exchange), { concurrency: 8, durationMs: PLAN.warm8Ms });
  } finally {
    client.close();
  }
}

/**
 * The soak: concurrency 8 for PLAN.soakMs against each gateway, in turns of half of it (so that what
 * the machine does meanwhile weighs on both alike), each gateway's RSS sampled every 250 ms all along.
 * A short run shows the heap before V8 has collected much; only a long one shows where memory settles.
 */
async function soakInTurns(first: GatewayProcess, second: GatewayProcess, w: Workload): Promise<{ flags: SoakResult; defaults: SoakResult }> {
  const turns = [first, second, first, second];
  const samplers = [sampleRss(first.pid, 250), sampleRss(second.pid, 250)];
  const loads: Summary[][] = [[], []];
  try {
    for (const [i, gateway] of turns.entries()) {
      const exchange = { url: `${gateway.url}/fn/${w.fn}`, body: w.input, expected: w.expected };
      const client = createClient(8);
      try {
        loads[i % 2]!.push(await measure(() => client.send(exchange), { concurrency: 8, durationMs: PLAN.soakMs / 2 }));
      } finally {
        client.close();
      }
    }
  } finally {
    for (const sampler of samplers) await sampler.stop();
  }
  const result = async (index: number, gateway: GatewayProcess): Promise<SoakResult> => {
    const parts = loads[index]!;
    const requests = parts.reduce((sum, part) => sum + part.n, 0);
    return {
      durationMs: PLAN.soakMs,
      requests,
      errors: parts.reduce((sum, part) => sum + part.errors, 0),
      rps: requests / (PLAN.soakMs / 1000),
      p99: Math.max(...parts.map((part) => part.p99)),
      rssPeakBytes: await samplers[index]!.stop(),
      rssEndBytes: await gateway.rss(),
    };
  };
  return { flags: await result(0, first), defaults: await result(1, second) };
}

/** What a request for workload `w` to `gateway` sends and must get back. */
function exchangeOf(gateway: GatewayProcess, w: Workload): Exchange {
  return { url: `${gateway.url}/fn/${w.fn}`, body: w.input, expected: w.expected };
}

/**
 * (e): PLAN.cold samples of each exchange, taken in turns (so that the machine's noise weighs on each
 * alike). Each sample waits until the gateway has no container at all, then times the first byte.
 */
async function measureCold(gateway: GatewayProcess, exchanges: Exchange[]): Promise<Summary[]> {
  const taken = exchanges.map(() => ({ samples: [] as number[], errors: 0, wall: 0 }));
  for (let i = 0; i < PLAN.cold; i += 1) {
    for (const [k, exchange] of exchanges.entries()) {
      const into = taken[k]!;
      await waitForEmptyPool(gateway);
      const client = createClient(1);
      const begin = performance.now();
      try {
        into.samples.push((await client.send(exchange)).firstByteMs);
      } catch {
        into.errors += 1;
      } finally {
        into.wall += performance.now() - begin;
        client.close();
      }
    }
  }
  return taken.map(({ samples, wall, errors }) => summarize(samples, wall, errors));
}

async function waitForEmptyPool(gateway: GatewayProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  while ((await gateway.pool()).total > 0) {
    if (Date.now() > deadline) throw new Error('the cold gateway kept a container for 30 s; is FNIX_IDLE_TTL_MS honoured?');
    await new Promise((r) => setTimeout(r, 50));
  }
}

function binary(host: BenchHost, w: Workload): string[] {
  return [`${host.busybox}/bin/${w.applet[0]}`, ...w.applet.slice(1)];
}

function podmanArgv(host: BenchHost): string[] {
  return ['podman', ...host.podman.globalArgs];
}

async function buildReport(
  results: Record<Workload['key'], WorkloadResults>,
  sideBySide: Record<string, SideBySideResult>,
  closure: ClosureReport,
  refill: RefillRound[],
  rss: { rssIdle: number; rssPeak: number; soak: SoakResult; soakDefaults: SoakResult },
  serve: ServeReport,
  host: BenchHost,
  wallMs: number,
): Promise<BenchReport> {
  const rates = refill.map((r) => r.perSecond).sort((a, b) => a - b);
  const report: BenchReport = {
    date: new Date().toISOString(),
    quick,
    machine: await machineOf(host),
    workloads: results,
    sideBySide,
    closure,
    refill: { rounds: refill, medianPerSecond: rates[Math.floor(rates.length / 2)] ?? 0 },
    gateway: { rssIdleBytes: rss.rssIdle, rssPeakBytes: rss.rssPeak, soak: rss.soak, soakWithNodeDefaults: rss.soakDefaults },
    ratios: Object.fromEntries(
      Object.entries(results).map(([key, r]) => [
        key,
        { warmOverFloor: r.warm1.p50 / r.floor.p50, naiveOverWarm: r.naive.p50 / r.warm1.p50, execOverWarm: r.exec.p50 / r.warm1.p50 },
      ]),
    ),
    serve,
    targets: [],
    wallMs,
  };
  report.targets = judgeTargets(report);
  return report;
}

/** What the run ran on. */
async function machineOf(host: BenchHost): Promise<Machine> {
  const podmanVersion = String((await host.podman.exec(['version', '--format', '{{.Client.Version}}'])).stdout).trim();
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryBytes: totalmem(),
    kernel: release(),
    node: process.version,
    podman: podmanVersion,
  };
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
