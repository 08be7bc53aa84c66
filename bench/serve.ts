/**
 * @module
 * Serve functions (issue 16) side by side with what they replace and with their floor, for a Python and a
 * Node.js "hello" handler (every GET answers `hello\n`), all in one run, by wrk, every answer checked:
 *   (i)   per-invocation process, today's mode: a plain function whose command is the interpreter running
 *         the handler once per request (`python3 -S hello.py`, `node hello.cjs`), warm, through fnix;
 *   (ii)  serve mode through fnix, warm: the same handler as a long-lived stdlib server (Python's
 *         ThreadingHTTPServer with HTTP/1.1 and disable_nagle_algorithm, Node's http), at concurrency 1
 *         and 8;
 *   (iii) the floor: the same server program run directly on the host by the same interpreter from the
 *         Nix store (the function's package store path, resolved in the gateway's package set as a
 *         function's build resolves it), with PORT set, bound to 127.0.0.1, hit by the same client;
 *   (iv)  the first request after a deploy: a push that changes the serve function (its env), and as soon
 *         as `git push` returns, one request on a new connection, as a user's curl would send it, and a
 *         second right after, against the same request sent warm just before the push; every other push
 *         waits a few seconds before its first request, which tells the cost of what a push leaves the
 *         machine doing from that of the new instance's first use; the push's own duration beside them.
 * (ii) and (iii) are taken in rounds, in turns (which goes first alternates), so that what the machine does
 * meanwhile weighs on both alike; the gateway's RSS is sampled while Node's handler is under load at
 * concurrency 8, and the gateway's CPU per request at concurrency 8 is read from /proc.
 *
 * The functions are in bench/serve-functions, not bench/functions: a serve function's minInstances hold
 * containers from the moment it is deployed, and the other gateways of the run (the cold one above all,
 * which waits for an empty pool) must not have them. They run in a gateway of their own, which also keeps
 * its RSS about this load alone.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { get } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { packageEnvironment } from '../runtime/nix/environment.ts';
import { readCpu } from './cpu-time.ts';
import { startProgramOnHost, type FloorServer } from './floor.ts';
import { freePort, sampleRss, type GatewayProcess } from './gateway-process.ts';
import type { BenchHost } from './host.ts';
import { summarize, type Summary } from './stats.ts';
import { combineRounds, runWrk, type WrkLoad, type WrkResult } from './wrk.ts';

/** The serve rows' functions (see the module's comment for why they are not in bench/functions). */
export const SERVE_FUNCTIONS = fileURLToPath(new URL('./serve-functions', import.meta.url));
/** The deploy token of the serve rows' gateway (its pushes are the benchmark's own). */
export const SERVE_TOKEN = 'bench-serve-token-0123456789';
/** What every handler answers. */
const HELLO = Buffer.from('hello\n');
/** The header the serve handlers answer with: their manifest's env.BENCH_DEPLOY, which each push changes. */
const DEPLOY_HEADER = 'x-bench-deploy';
/** Warm requests on a new connection each, just before a push: what the first request after it is read against. */
const WARM_BEFORE_PUSH = 5;
/**
 * Every other push of a function (the second, the fourth, ...) waits this long before its first request:
 * against the pushes whose first request goes at once, it tells what the first request pays for the work
 * a push leaves the machine doing (the old version's instance stopped, its container removed, the pool
 * refilled) from what it pays for the new instance's first use.
 */
const SETTLE_MS = 3000;

const GIT_ENV = {
  GIT_TERMINAL_PROMPT: '0',
  GIT_AUTHOR_NAME: 'bench',
  GIT_AUTHOR_EMAIL: 'bench@example.com',
  GIT_COMMITTER_NAME: 'bench',
  GIT_COMMITTER_EMAIL: 'bench@example.com',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
};

/** One handler, in both modes. */
interface Language {
  key: 'python' | 'node';
  /** The package that brings the interpreter. */
  pkg: string;
  /** The plain function: the interpreter runs the handler once per request, started as fast as it can be (python3 -S). */
  perProcessFn: string;
  /** The same, as a function written plainly runs it (python3, site initialisation included), when that differs. */
  perProcessDefaultFn?: string;
  /** The serve function: the same handler as a long-lived server. */
  serveFn: string;
}

const LANGUAGES: Language[] = [
  { key: 'python', pkg: 'python3', perProcessFn: 'hello-py', perProcessDefaultFn: 'hello-py-site', serveFn: 'hello-py-serve' },
  { key: 'node', pkg: 'nodejs', perProcessFn: 'hello-node', serveFn: 'hello-node-serve' },
];

/** How much: rounds of each row, their lengths, the warm-up of each target, and pushes per language. */
export interface ServePlan {
  rounds: number;
  c1Ms: number;
  c8Ms: number;
  /** (i), at concurrency 1, in each round. */
  perProcessMs: number;
  warmupMs: number;
  deploys: number;
}

/** (iv): one push of a serve function, and the requests around it. */
export interface DeploySample {
  /** `git push` from its start to its return (build, checks, minInstances ready, the switch). */
  pushMs: number;
  /** The first request after the push returned, on a new connection: its latency. */
  firstMs: number;
  /** How long after the push's return the first request went: 0, or {@link SETTLE_MS} for every other push. */
  settleMs: number;
  /** From the push's return to the first response's end. */
  sincePushMs: number;
  /** The second request, sent as the first ended, likewise. */
  secondMs: number;
  /** Whether the first response came from the pushed version (its X-Bench-Deploy), with the expected body. */
  fromNewVersion: boolean;
  /** The same request, warm, just before the push, one new connection each. */
  warmMs: number[];
}

/** One language's rows. */
export interface ServeLanguageResult {
  /** The interpreter's store path (the package on PATH): the same for (i), (ii) and (iii). */
  storePath: string;
  /** (i) a process per request through fnix, warm, concurrency 1. */
  perProcess: WrkResult;
  /** (i) with the interpreter as a plain command runs it (python3 without -S), where that differs. */
  perProcessDefault?: WrkResult | undefined;
  /** (ii) serve mode through fnix, warm. `gatewayCpuPerRequestUs`: the gateway's own CPU per request at concurrency 8. */
  fnix: { c1: WrkResult; c8: WrkResult; gatewayCpuPerRequestUs: number };
  /** (iii) the same server program on the host. */
  host: { c1: WrkResult; c8: WrkResult };
  /** Each round's p50 at concurrency 1, (ii) and (iii), taken one after the other. */
  pairs: Array<{ fnix: number; host: number }>;
  /** (iv) the pushes. */
  deploys: DeploySample[];
  /**
   * (iv) summarised: the first request as soon as the push returned, and the second right after it; the
   * first request of the pushes that waited {@link SETTLE_MS}; the warm requests before every push; the pushes.
   */
  afterDeploy: { first: Summary; second: Summary; settled: Summary; warm: Summary; pushMs: Summary };
}

/** Everything the serve rows measured. */
export interface ServeResult {
  python: ServeLanguageResult;
  node: ServeLanguageResult;
  /** The serve gateway's RSS: once its functions were warm; the peak sampled under Node's handler at concurrency 8 (every 100 ms); at the end. */
  gateway: { rssIdleBytes: number; rssPeakC8Bytes: number; rssEndBytes: number };
}

/** Measures the rows against `gateway`, which serves {@link SERVE_FUNCTIONS} with {@link SERVE_TOKEN}; `workDir` is for the clone that pushes. */
export async function measureServe(
  host: BenchHost,
  gateway: GatewayProcess,
  workDir: string,
  plan: ServePlan,
  say: (line: string) => void,
): Promise<ServeResult> {
  await waitForInstances(
    gateway,
    LANGUAGES.map((l) => l.serveFn),
  );
  const resolved = new Map<Language['key'], { storePath: string; command: string[]; env: Record<string, string> }>();
  for (const language of LANGUAGES) {
    const resolution = await host.resolver.resolve([language.pkg]);
    // The environment fnix gives the server (runtime/runner.ts functionEnv), less FNIX_FUNCTION and FNIX_INSTANCE_ID.
    const manifest = JSON.parse(await readFile(join(SERVE_FUNCTIONS, language.serveFn, 'function.json'), 'utf8')) as {
      command: string[];
      env?: Record<string, string>;
    };
    const env = { ...(await packageEnvironment(resolution.closure)), ...manifest.env, PATH: resolution.binPath, HOME: '/tmp', TMPDIR: '/tmp' };
    resolved.set(language.key, { storePath: resolution.packages[0]!.storePath, command: manifest.command, env });
  }

  const servers: FloorServer[] = [];
  const taken = Object.fromEntries(
    LANGUAGES.map((l) => [
      l.key,
      {
        perProcess: [] as WrkResult[],
        perProcessDefault: [] as WrkResult[],
        fnixC1: [] as WrkResult[],
        fnixC8: [] as WrkResult[],
        hostC1: [] as WrkResult[],
        hostC8: [] as WrkResult[],
        gatewayUs: 0,
      },
    ]),
  ) as Record<
    Language['key'],
    {
      perProcess: WrkResult[];
      perProcessDefault: WrkResult[];
      fnixC1: WrkResult[];
      fnixC8: WrkResult[];
      hostC1: WrkResult[];
      hostC8: WrkResult[];
      gatewayUs: number;
    }
  >;
  let rssPeakC8 = 0;
  const rssIdle = await gateway.rss();
  try {
    const loads = new Map<Language['key'], { perProcess: WrkLoad; perProcessDefault: WrkLoad | undefined; fnix: WrkLoad; host: WrkLoad }>();
    for (const language of LANGUAGES) {
      const { storePath, command, env } = resolved.get(language.key)!;
      const port = await freePort();
      // The function's command, its program by its store path (as fnix's PATH finds it): the same file of the same package.
      const [program, ...args] = command;
      const server = await startProgramOnHost([`${storePath}/bin/${program}`, ...args], port, {
        cwd: join(SERVE_FUNCTIONS, language.serveFn),
        env: { ...env, PORT: String(port) },
      });
      servers.push(server);
      loads.set(language.key, {
        perProcess: { url: `${gateway.url}/fn/${language.perProcessFn}`, expected: HELLO },
        perProcessDefault: language.perProcessDefaultFn ? { url: `${gateway.url}/fn/${language.perProcessDefaultFn}`, expected: HELLO } : undefined,
        fnix: { url: `${gateway.url}/fn/${language.serveFn}`, expected: HELLO },
        host: { url: server.url, expected: HELLO },
      });
    }
    // Warm-up: the plain functions' containers specialised (one request at a time: that is how they are
    // measured), the serve functions' connections open, every server's code paths run. A quick run's
    // first round is its warm-up (warmupMs 0).
    for (const language of plan.warmupMs > 0 ? LANGUAGES : []) {
      const load = loads.get(language.key)!;
      say(`serve: ${language.key}: warm-up`);
      await runWrk(load.perProcess, 1, plan.warmupMs);
      if (load.perProcessDefault) await runWrk(load.perProcessDefault, 1, plan.warmupMs);
      await runWrk(load.fnix, 8, plan.warmupMs);
      await runWrk(load.host, 8, plan.warmupMs);
    }
    for (let round = 0; round < plan.rounds; round += 1) {
      for (const language of LANGUAGES) {
        const load = loads.get(language.key)!;
        const into = taken[language.key];
        // Which of the two goes first alternates, so that neither always follows the same work.
        const order: Array<'fnix' | 'host'> = round % 2 === 0 ? ['host', 'fnix'] : ['fnix', 'host'];
        say(`serve: ${language.key}: round ${round + 1} of ${plan.rounds}`);
        for (const target of order) into[target === 'fnix' ? 'fnixC1' : 'hostC1'].push(await runWrk(load[target], 1, plan.c1Ms));
        for (const target of order) {
          if (target === 'host') {
            into.hostC8.push(await runWrk(load.host, 8, plan.c8Ms));
            continue;
          }
          const rss = language.key === 'node' ? sampleRss(gateway.pid, 100) : undefined;
          const before = await readCpu(gateway.pid);
          const c8 = await runWrk(load.fnix, 8, plan.c8Ms);
          into.gatewayUs += (await readCpu(gateway.pid)).processUs - before.processUs;
          if (rss) rssPeakC8 = Math.max(rssPeakC8, await rss.stop());
          into.fnixC8.push(c8);
        }
        into.perProcess.push(await runWrk(load.perProcess, 1, plan.perProcessMs));
        if (load.perProcessDefault) into.perProcessDefault.push(await runWrk(load.perProcessDefault, 1, plan.perProcessMs));
      }
    }
  } finally {
    for (const server of servers) await server.stop();
  }

  say(`serve: the first request after a deploy, ${plan.deploys} push(es) of each serve function`);
  const deploys = await measureDeploys(gateway, workDir, plan.deploys, say);
  const result = (language: Language): ServeLanguageResult => {
    const t = taken[language.key];
    const fnixC8 = combineRounds(t.fnixC8);
    const samples = deploys[language.key];
    const at = samples.filter((s) => s.settleMs === 0);
    const settled = samples.filter((s) => s.settleMs > 0);
    return {
      storePath: resolved.get(language.key)!.storePath,
      perProcess: combineRounds(t.perProcess),
      perProcessDefault: t.perProcessDefault.length > 0 ? combineRounds(t.perProcessDefault) : undefined,
      fnix: { c1: combineRounds(t.fnixC1), c8: fnixC8, gatewayCpuPerRequestUs: t.gatewayUs / Math.max(1, fnixC8.requests) },
      host: { c1: combineRounds(t.hostC1), c8: combineRounds(t.hostC8) },
      pairs: t.fnixC1.map((fnix, i) => ({ fnix: fnix.p50, host: t.hostC1[i]!.p50 })),
      deploys: samples,
      afterDeploy: {
        first: latencies(at, (s) => [s.firstMs]),
        second: latencies(at, (s) => [s.secondMs]),
        settled: latencies(settled, (s) => [s.firstMs]),
        warm: latencies(samples, (s) => s.warmMs),
        pushMs: latencies(samples, (s) => [s.pushMs]),
      },
    };
  };
  return {
    python: result(LANGUAGES[0]!),
    node: result(LANGUAGES[1]!),
    gateway: { rssIdleBytes: rssIdle, rssPeakC8Bytes: rssPeakC8, rssEndBytes: await gateway.rss() },
  };
}

/** The latencies `of` each sample, as a summary whose errors are the samples not answered by the pushed version. */
function latencies(samples: DeploySample[], of: (sample: DeploySample) => number[]): Summary {
  const good = samples.filter((s) => s.fromNewVersion);
  return summarize(good.flatMap(of), 0, samples.length - good.length);
}

/**
 * (iv): `deploys` pushes of each serve function, in turns (python, node, python, ...), each changing its
 * env.BENCH_DEPLOY and nothing else. Before each push, warm requests on new connections; as soon as the
 * push returns (or {@link SETTLE_MS} after, every other push), the first request and the second, which
 * must come from the pushed version.
 */
async function measureDeploys(
  gateway: GatewayProcess,
  workDir: string,
  deploys: number,
  say: (line: string) => void,
): Promise<Record<Language['key'], DeploySample[]>> {
  const git = async (cwd: string, ...args: string[]) => {
    const run = await execa('git', args, { cwd, env: GIT_ENV, reject: false, all: true });
    if (run.exitCode !== 0) throw new Error(`git ${args.join(' ')} failed (${run.exitCode}):\n${run.all}`);
    return run;
  };
  const clone = join(workDir, 'clone');
  await git(workDir, 'clone', '--quiet', `${gateway.url.replace('http://', `http://fnix:${SERVE_TOKEN}@`)}/git/functions.git`, clone);
  const samples: Record<Language['key'], DeploySample[]> = { python: [], node: [] };
  let serial = 0;
  for (let k = 0; k < deploys; k += 1) {
    for (const language of LANGUAGES) {
      serial += 1;
      const url = `${gateway.url}/fn/${language.serveFn}`;
      const manifestFile = join(clone, 'functions', language.serveFn, 'function.json');
      const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as { env: Record<string, string> };
      const current = manifest.env['BENCH_DEPLOY'] ?? '0';
      const warmMs: number[] = [];
      for (let i = 0; i < WARM_BEFORE_PUSH; i += 1) {
        const answer = await fetchOnce(url);
        if (!answer.ok || answer.deploy !== current)
          throw new Error(`${language.serveFn} answered ${answer.status} (deploy ${answer.deploy}, expected ${current}) before a push`);
        warmMs.push(answer.ms);
      }
      const next = `${serial}`;
      manifest.env['BENCH_DEPLOY'] = next;
      await writeFile(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`);
      await git(clone, 'commit', '--quiet', '-am', `bench: deploy ${next} of ${language.serveFn}`);
      say(`serve: push ${serial} of ${deploys * LANGUAGES.length} (${language.serveFn})`);
      const pushBegin = performance.now();
      const pushed = await git(clone, 'push', '--quiet', 'origin', 'main');
      const pushEnd = performance.now();
      if (!/is live/.test(pushed.all ?? '')) throw new Error(`the push of ${language.serveFn} did not go live:\n${pushed.all}`);
      const settleMs = k % 2 === 1 ? SETTLE_MS : 0;
      if (settleMs > 0) await new Promise((r) => setTimeout(r, settleMs));
      const first = await fetchOnce(url);
      const sincePushMs = performance.now() - pushEnd;
      const second = await fetchOnce(url);
      samples[language.key].push({
        pushMs: pushEnd - pushBegin,
        firstMs: first.ms,
        settleMs,
        sincePushMs,
        secondMs: second.ms,
        fromNewVersion: first.ok && first.deploy === next && second.ok && second.deploy === next,
        warmMs,
      });
    }
  }
  return samples;
}

/** One GET on a connection of its own (as curl would send it), closed after: its latency and what came back. */
function fetchOnce(url: string): Promise<{ ms: number; status: number; ok: boolean; deploy: string | undefined }> {
  return new Promise((resolve, reject) => {
    const begin = performance.now();
    const request = get(url, { agent: false, timeout: 30_000 }, (response) => {
      const parts: Buffer[] = [];
      response.on('data', (chunk: Buffer) => parts.push(chunk));
      response.on('error', reject);
      response.on('end', () => {
        const deploy = response.headers[DEPLOY_HEADER];
        resolve({
          ms: performance.now() - begin,
          status: response.statusCode ?? 0,
          ok: response.statusCode === 200 && Buffer.concat(parts).equals(HELLO),
          deploy: typeof deploy === 'string' ? deploy : undefined,
        });
      });
    });
    request.on('timeout', () => request.destroy(new Error(`no answer from ${url} within 30 s`)));
    request.on('error', reject);
  });
}

/** Waits (up to 60 s) until every serve function in `names` has a ready instance, as /healthz lists them. */
async function waitForInstances(gateway: GatewayProcess, names: string[]): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const health = (await (await fetch(`${gateway.url}/healthz`)).json()) as { functions: Array<{ name: string; instances?: Array<{ state: string }> }> };
    const ready = names.filter((name) => health.functions.find((f) => f.name === name)?.instances?.some((i) => i.state === 'ready'));
    if (ready.length === names.length) return;
    if (Date.now() > deadline) throw new Error(`no ready instance of ${names.filter((n) => !ready.includes(n)).join(', ')} within 60 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
