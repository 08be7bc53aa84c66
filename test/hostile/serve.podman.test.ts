/**
 * @module
 * Hostile serve functions against real containers: the attacks test/hostile/code.podman.test.ts runs
 * against per-invocation functions, made by a long-lived server instead (a fork bomb, a memory bomb,
 * the network, the store, the host's files, a huge response, floods of output, requests held without
 * an answer, responses that are not HTTP), and the ones only a server can make: on its agent's relay
 * socket, and on its readiness probe. Each runs with `hello` invoked alongside, and after each the
 * gateway must be healthy and its other functions (hello, and the serve function counter-py) answer.
 *
 * Every serve function here is test/hostile/serve/server.py, with an HS_MODE of its own.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { copyFile, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES_DIR, startTestGateway, TEST_TOKEN, type TestGateway } from '../helpers/gateway.ts';
import { scrape } from '../helpers/metrics.ts';
import { pidsWithEnv, waitUntil } from '../helpers/processes.ts';
import { alongside, report } from './helpers.ts';
import type { InstanceInfo } from '../../runtime/serve/instances.ts';

const SERVER = fileURLToPath(new URL('./serve/server.py', import.meta.url));
/** This run's own: in every server's environment, and in the name of what it tries to write to the store. */
const RUN = randomBytes(6).toString('hex');
// Twice the memory growth allowed below: a gateway that held the response would fail. (Through a
// relay on a loaded machine a response moves at some 10-40 MiB/s: more would make a long test.)
const MAX_OUTPUT = 96 * 1024 * 1024;
const MAX_RSS_GROWTH_MIB = 48;
/** The attack server's timeoutMs and memoryMb. */
const TIMEOUT_MS = 5000;
const MEMORY_MB = 128;

/** The serve functions, by name: the server's HS_MODE, and what their manifest says besides. */
const SERVE_FUNCTIONS: Record<string, { mode: string; timeoutMs?: number; serve?: Record<string, unknown> }> = {
  'srv-attack': { mode: 'normal', timeoutMs: TIMEOUT_MS, serve: { maxInstances: 2 } },
  // The huge response's: its timeoutMs leaves time to pass FNIX_MAX_OUTPUT on a loaded machine.
  'srv-huge': { mode: 'normal', timeoutMs: 60_000 },
  'srv-flood': { mode: 'flood' },
  'srv-flood-end': { mode: 'flood' },
  'srv-ready-endless': { mode: 'ready-endless' },
  'srv-ready-garbage': { mode: 'ready-garbage', serve: { startTimeoutMs: 1500 } },
  'srv-ready-slow': { mode: 'ready-slow', serve: { startTimeoutMs: 1500 } },
  'srv-probe-only': { mode: 'probe-only', timeoutMs: 1500 },
};

/** One instance, as /healthz lists it. */
type Instance = InstanceInfo;

let gateway: TestGateway;
let functionsDir: string;

/** Writes serve function `name` into `dir`: server.py, run in `mode`. */
async function writeServeFunction(dir: string, name: string, mode: string, manifest: { timeoutMs?: number; serve?: Record<string, unknown> } = {}) {
  const folder = join(dir, name);
  await mkdir(folder, { recursive: true });
  await copyFile(SERVER, join(folder, 'server.py'));
  await writeFile(
    join(folder, 'function.json'),
    JSON.stringify({
      packages: ['python3', 'busybox'],
      command: ['python3', '-S', 'server.py'],
      env: { HS_MODE: mode, HS_RUN: RUN },
      serve: { port: 8080, readyPath: '/healthz', concurrency: 1, minInstances: 1, maxInstances: 1, ...manifest.serve },
      timeoutMs: manifest.timeoutMs ?? 10_000,
      memoryMb: MEMORY_MB,
    }),
  );
}

beforeAll(async () => {
  // A secret of the gateway's, which no function may see.
  process.env['FNIX_TOKEN'] = TEST_TOKEN;
  functionsDir = await mkdtemp(join(tmpdir(), 'fnix-hostile-serve-'));
  for (const name of ['hello', 'counter-py']) await cp(join(EXAMPLES_DIR, name), join(functionsDir, name), { recursive: true });
  for (const [name, { mode, ...manifest }] of Object.entries(SERVE_FUNCTIONS)) await writeServeFunction(functionsDir, name, mode, manifest);
  gateway = await startTestGateway({ functionsDir, maxOutput: MAX_OUTPUT, poolSize: 2, maxContainers: 32 });
});
afterAll(async () => {
  delete process.env['FNIX_TOKEN'];
  await gateway?.close();
  await rm(functionsDir, { recursive: true, force: true });
});

/** The gateway answers /healthz, and its other functions answer: a per-invocation one and a serve one. */
async function expectHealthy(): Promise<void> {
  const health = await fetch(`${gateway.url}/healthz`);
  expect(health.status).toBe(200);
  expect(((await health.json()) as any).status).toBe('ok');
  const hello = await fetch(`${gateway.url}/fn/hello`);
  expect(hello.status).toBe(200);
  expect(await hello.text()).toMatch(/^Hello/);
  const counter = await fetch(`${gateway.url}/fn/counter-py/hits`);
  expect(counter.status).toBe(200);
  expect(((await counter.json()) as any).hits).toBeGreaterThan(0);
}

async function functionEntry(name: string): Promise<any> {
  const body = (await (await fetch(`${gateway.url}/healthz`)).json()) as any;
  return body.functions.find((f: any) => f.name === name);
}

async function instancesOf(name: string): Promise<Instance[]> {
  return (await functionEntry(name))?.instances ?? [];
}

/** A ready instance of `name` other than `except`, waiting for one to be started if need be. */
async function readyInstance(name: string, except?: string): Promise<Instance> {
  let found: Instance | undefined;
  await waitUntil(
    async () => {
      found = (await instancesOf(name)).find((i) => i.state === 'ready' && i.id !== except);
      return found !== undefined;
    },
    30_000,
    `a ready instance of ${name}${except ? ` other than ${except}` : ''}`,
  );
  return found!;
}

/** The full podman id of container `name`. */
async function containerId(name: string): Promise<string> {
  return (await execa('podman', ['inspect', '--format', '{{.Id}}', name])).stdout.trim();
}

const containerGone = async (id: string) => (await execa('podman', ['ps', '-aq', '--no-trunc', '--filter', `id=${id}`])).stdout.trim() === '';

/** Host pids of this run's processes of instance `id` (the server, and whatever it started). */
async function pidsOfInstance(id: string): Promise<number[]> {
  const ours = new Set(await pidsWithEnv('HS_RUN', RUN));
  return (await pidsWithEnv('FNIX_INSTANCE_ID', id)).filter((pid) => ours.has(pid));
}

/** Host pids of this run's processes of function `name`. */
async function pidsOfFunction(name: string): Promise<number[]> {
  const ours = new Set(await pidsWithEnv('HS_RUN', RUN));
  return (await pidsWithEnv('FNIX_FUNCTION', name)).filter((pid) => ours.has(pid));
}

/** Expects instance `instance` to be gone, container and processes, and another to have taken its place. */
async function expectReplaced(name: string, instance: Instance, containerFullId: string): Promise<Instance> {
  const goneMs = await waitUntil(() => containerGone(containerFullId), 15_000, `the container of ${instance.id} to be removed`);
  expect(await pidsOfInstance(instance.id)).toEqual([]);
  const next = await readyInstance(name, instance.id);
  const response = await fetch(`${gateway.url}/fn/${name}/`);
  expect(response.status).toBe(200);
  expect(((await response.json()) as any).instance).toBe(next.id);
  return { ...next, startMs: Math.round(goneMs) };
}

async function errorOf(response: Response): Promise<{ code: string; message: string; [key: string]: unknown }> {
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  return ((await response.json()) as any).error;
}

/** Samples the test process's RSS (the gateway's and vitest's) after a full GC, every 50 ms, until stopped. */
function sampleRss(): { stop(): { growthMiB: number; peakMiB: number } } {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  const before = process.memoryUsage().rss;
  let peak = before;
  const timer = setInterval(() => {
    gc();
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 50);
  return {
    stop() {
      clearInterval(timer);
      return { growthMiB: (peak - before) / 1048576, peakMiB: peak / 1048576 };
    },
  };
}

/** Waits until what the gateway logs with `prefix` stops growing: it has read what the flood wrote. */
async function floodRead(prefix: string): Promise<void> {
  let last = -1;
  await waitUntil(
    async () => {
      const now = gateway.logs.filter((line) => line.includes(prefix)).length;
      const settled = now === last && now > 0;
      last = now;
      if (!settled) await new Promise((resolve) => setTimeout(resolve, 300));
      return settled;
    },
    20_000,
    'the flood to be read',
  );
}

describe('hostile serve functions', () => {
  afterEach(async () => {
    await expectHealthy();
  });

  /** The flood's instance and when its first log window ends, for the last test. */
  const flood = { instance: '', startedAt: 0 };
  const floodPrefix = () => `[srv-flood ${flood.instance}] `;

  it("logs at most 1 MiB a minute of a server's stdout and stderr flood, and answers as it floods", async () => {
    const instance = await readyInstance('srv-flood');
    flood.instance = instance.id;
    flood.startedAt = Date.parse(instance.startedAt);
    const hello = await alongside(gateway.url);
    // 4 MiB on stdout, 4 MiB on stderr, 4 MiB more on one line, then a line a second, for good.
    const response = await fetch(`${gateway.url}/fn/srv-flood/flood`);
    expect(response.status).toBe(200);
    expect(((await response.json()) as any).instance).toBe(instance.id);
    const logged = () => gateway.logs.filter((line) => line.includes(floodPrefix()));
    await floodRead(floodPrefix());
    const figures = await hello.stop();
    // As the server's log counts them: each line's text and its newline (log lines here keep theirs).
    const bytes = logged().reduce((sum, line) => sum + line.slice(line.indexOf(floodPrefix()) + floodPrefix().length).length, 0);
    expect(bytes).toBeGreaterThan(512 * 1024); // it logged up to the budget...
    expect(bytes).toBeLessThanOrEqual(1024 * 1024); // ...and no further
    expect(logged().some((line) => line.includes('trickle'))).toBe(false); // over the budget until the minute is over
    expect(figures.failures).toBe(0);
    await report('serve: stdout and stderr flood', { writtenMiB: 12, loggedKiB: Math.round(bytes / 1024), budget: '1 MiB a minute', hello: figures });
  });

  it('says how many lines it did not log when a flooding server ends', async () => {
    const instance = await readyInstance('srv-flood-end');
    const prefix = `[srv-flood-end ${instance.id}] `;
    const response = await fetch(`${gateway.url}/fn/srv-flood-end/flood`);
    expect(response.status).toBe(200);
    await floodRead(prefix);
    const warning = new RegExp(`${prefix.replace(/[[\]]/g, '\\$&')}(\\d+) lines of output were not logged: over 1048576 bytes`);
    expect(gateway.logs.some((line) => warning.test(line))).toBe(false); // within its first minute
    // Its server ends (out of memory): its output ends, and what was not logged is said at once.
    const ended = await fetch(`${gateway.url}/fn/srv-flood-end/memory`);
    expect(ended.status).toBe(502);
    await waitUntil(() => gateway.logs.some((line) => warning.test(line)), 10_000, 'the warning of lines not logged');
    const dropped = Number(warning.exec(gateway.logs.find((line) => warning.test(line))!)![1]);
    expect(dropped).toBeGreaterThan(7000);
    await readyInstance('srv-flood-end', instance.id);
    await report('serve: lines not logged, at the end of a server', { dropped });
  });

  it('contains a fork bomb in a server with the pids limit, and replaces the instance', async () => {
    const instance = await readyInstance('srv-attack');
    const id = await containerId(instance.container);
    const cgroup = `/sys/fs/cgroup/pids/libpod_parent/libpod-${id}`;
    const pidsMax = (await readFile(`${cgroup}/pids.max`, 'utf8')).trim();
    expect(pidsMax).toBe('256');
    let peak = 0;
    let limitHit = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const current = Number(await readFile(`${cgroup}/pids.current`, 'utf8').catch(() => '0'));
        const events = await readFile(`${cgroup}/pids.events`, 'utf8').catch(() => '');
        peak = Math.max(peak, current);
        limitHit = Math.max(limitHit, Number(/^max (\d+)/m.exec(events)?.[1] ?? 0));
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    })();
    const hello = await alongside(gateway.url);
    const began = performance.now();
    const response = await fetch(`${gateway.url}/fn/srv-attack/fork-bomb`);
    const elapsed = performance.now() - began;
    const error = await errorOf(response);
    sampling = false;
    await sampler;
    // The bomb's server holds the request: its timeoutMs ends it, and at concurrency 1 the instance goes.
    expect(response.status).toBe(504);
    expect(error.code).toBe('FUNCTION_TIMEOUT');
    expect(peak).toBeLessThanOrEqual(256);
    expect(limitHit, 'the bomb reached the pids limit').toBeGreaterThan(0);
    const next = await expectReplaced('srv-attack', instance, id);
    const figures = await hello.stop();
    expect(figures.failures).toBe(0);
    await report('serve: fork bomb', {
      status: response.status,
      code: error.code,
      endedAfterMs: Math.round(elapsed),
      peakPids: peak,
      pidsLimitHits: limitHit,
      containerGoneMs: next.startMs,
      replacedBy: next.id,
      hello: figures,
    });
  });

  it('kills a server that allocates past its memoryMb, answers FUNCTION_OOM, and replaces the instance', async () => {
    const instance = await readyInstance('srv-attack');
    const id = await containerId(instance.container);
    const hello = await alongside(gateway.url);
    const response = await fetch(`${gateway.url}/fn/srv-attack/memory`);
    const error = await errorOf(response);
    expect(response.status).toBe(502);
    expect(error.code).toBe('FUNCTION_OOM');
    expect(error.message).toContain(`memoryMb of ${MEMORY_MB} MiB`);
    const next = await expectReplaced('srv-attack', instance, id);
    const figures = await hello.stop();
    expect(figures.failures).toBe(0);
    await report('serve: memory bomb', { status: response.status, code: error.code, replacedBy: next.id, hello: figures });
  });

  it('answers a request the server holds with 504 at timeoutMs, and replaces the instance', async () => {
    const instance = await readyInstance('srv-attack');
    const id = await containerId(instance.container);
    const hello = await alongside(gateway.url);
    const began = performance.now();
    const response = await fetch(`${gateway.url}/fn/srv-attack/hold`);
    const elapsed = performance.now() - began;
    const error = await errorOf(response);
    expect(response.status).toBe(504);
    expect(error.code).toBe('FUNCTION_TIMEOUT');
    expect(error.message).toContain(`within its timeoutMs of ${TIMEOUT_MS} ms`);
    expect(elapsed).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    expect(elapsed).toBeLessThan(TIMEOUT_MS + 10_000);
    const next = await expectReplaced('srv-attack', instance, id);
    const figures = await hello.stop();
    expect(figures.failures).toBe(0);
    await report('serve: request held without an answer', { status: 504, answeredAfterMs: Math.round(elapsed), replacedBy: next.id, hello: figures });
  });

  it('gives a server no network but loopback', async () => {
    const hello = await alongside(gateway.url);
    const response = await fetch(`${gateway.url}/fn/srv-attack/network?port=${gateway.server.port}`);
    expect(response.status).toBe(200);
    const seen = (await response.json()) as any;
    const figures = await hello.stop();
    expect(seen.interfaces).toEqual(['lo']);
    for (const [target, result] of Object.entries(seen.tcp) as Array<[string, any]>) expect(result.ok, `${target}: ${JSON.stringify(result)}`).toBe(false);
    // The gateway listens on the host's loopback, which is not the container's.
    expect(seen.tcp[`127.0.0.1:${gateway.server.port}`].error).toMatch(/ConnectionRefused/);
    expect(seen.tcp['1.1.1.1:80'].error).toMatch(/unreachable/i);
    expect(seen.dns.ok).toBe(false);
    expect(seen.udp.ok).toBe(false);
    expect(figures.failures).toBe(0);
    await report('serve: the network', {
      interfaces: seen.interfaces,
      tcp: Object.fromEntries(Object.entries(seen.tcp).map(([k, v]: [string, any]) => [k, v.error])),
      dns: seen.dns.error,
      udp: seen.udp.error,
      hello: figures,
    });
  });

  it("keeps the host's store unchanged, and every write outside /tmp refused", async () => {
    const marker = `fnix-serve-was-here-${RUN}`;
    const hello = await alongside(gateway.url);
    const response = await fetch(`${gateway.url}/fn/srv-attack/store?marker=${marker}`);
    expect(response.status).toBe(200);
    const seen = (await response.json()) as any;
    const figures = await hello.stop();
    for (const attempt of ['newStoreFile', 'newStoreDir', 'appendStoreFile', 'removeStoreFile', 'chmodStoreFile', 'fn', 'root', 'etc']) {
      expect(seen[attempt].ok, `${attempt}: ${JSON.stringify(seen[attempt])}`).toBe(false);
    }
    expect(seen.tmp.ok).toBe(true);
    expect(seen.stillThere).toBe(true);
    // The host: no marker, and the interpreter's store path as Nix registered it.
    expect(existsSync(`/nix/store/${marker}`)).toBe(false);
    expect(existsSync(`/nix/store/${marker}-dir`)).toBe(false);
    const storePath = (seen.executable as string).split('/').slice(0, 4).join('/');
    expect(storePath).toMatch(/^\/nix\/store\/[0-9a-z]{32}-/);
    const verified = await execa('nix-store', ['--verify-path', storePath], { reject: false, all: true });
    expect(verified.exitCode, verified.all).toBe(0);
    expect(figures.failures).toBe(0);
    await report('serve: writes to the store and outside /tmp', {
      refused: Object.fromEntries(['newStoreFile', 'appendStoreFile', 'removeStoreFile', 'fn', 'root', 'etc'].map((k) => [k, seen[k].error])),
      hostStore: 'no marker; nix-store --verify-path clean',
      hello: figures,
    });
  });

  it("shows a server none of the host's files, processes or secrets", async () => {
    const response = await fetch(`${gateway.url}/fn/srv-attack/host-files`);
    expect(response.status).toBe(200);
    const text = await response.text();
    const seen = JSON.parse(text);
    expect(text).not.toContain(TEST_TOKEN);
    expect(Object.keys(seen.env).filter((name) => name === 'FNIX_TOKEN')).toEqual([]);
    expect(seen.root).toEqual(['dev', 'etc', 'fn', 'nix', 'proc', 'run', 'sbin', 'sys', 'tmp', 'usr']);
    expect(seen.shadow.ok).toBe(false);
    expect(seen.hostRoot.ok).toBe(false);
    expect(seen.home.ok).toBe(false);
    expect(seen.hostState.ok).toBe(false);
    expect(seen.podmanSocket).toBe(false);
    expect(seen.nixDaemonSocket).toBe(false);
    // Its own container's processes only: the agent, and the server.
    const commands = Object.values(seen.processes) as string[];
    for (const command of commands) expect(command, JSON.stringify(seen.processes)).toMatch(/fnix-agent|python3 -S server\.py/);
    await report('serve: what a server can see', { root: seen.root, processes: commands, runFnix: seen.runFnix, secrets: 'none' });
  });

  it("closes what a server sends its agent's relay socket that answers no open, and keeps its relays working", async () => {
    const instance = await readyInstance('srv-attack');
    const hello = await alongside(gateway.url);
    const response = await fetch(`${gateway.url}/fn/srv-attack/relay`);
    expect(response.status).toBe(200);
    const seen = (await response.json()) as any;
    const figures = await hello.stop();
    expect(['closed', 'reset']).toContain(seen.madeUp.answer);
    expect(seen.madeUp.ms).toBeLessThan(2000);
    // Silent: closed at its id deadline (2 s), not left open.
    expect(['closed', 'reset']).toContain(seen.silent.answer);
    expect(seen.silent.ms).toBeLessThan(4500);
    for (const answer of seen.guessed) expect(['closed', 'reset']).toContain(answer);
    // Past the connections the host keeps waiting for an id, the rest are closed at once.
    expect(seen.crowd.connected + seen.crowd.refused).toBe(100);
    expect(seen.crowd.closedAtOnce).toBeGreaterThanOrEqual(100 - 64 - seen.crowd.refused);
    // The same instance answers again, over a new relay (the attack's answer closed its connection).
    const again = await fetch(`${gateway.url}/fn/srv-attack/`);
    expect(again.status).toBe(200);
    expect(((await again.json()) as any).instance).toBe(instance.id);
    expect(figures.failures).toBe(0);
    await report('serve: the relay socket', { ...seen, hello: figures });
  });

  it('keeps the gateway answering while a server floods its relay socket with connections', async () => {
    const instance = await readyInstance('srv-attack');
    const hello = await alongside(gateway.url);
    const response = await fetch(`${gateway.url}/fn/srv-attack/relay-flood?seconds=3`);
    expect(response.status).toBe(200);
    const seen = (await response.json()) as any;
    const figures = await hello.stop();
    expect(seen.connections).toBeGreaterThan(0);
    expect(figures.failures).toBe(0);
    const again = await fetch(`${gateway.url}/fn/srv-attack/`);
    expect(again.status).toBe(200);
    expect(((await again.json()) as any).instance).toBe(instance.id);
    await report('serve: relay socket flood', { connections: seen.connections, perSecond: Math.round(seen.connections / 3), hello: figures });
  });

  it('cuts a huge response at FNIX_MAX_OUTPUT, aborting the connection, with the gateway memory flat', async () => {
    const hello = await alongside(gateway.url);
    const rss = sampleRss();
    const began = performance.now();
    // The client reads in a process of its own, so that the memory measured here is the gateway's.
    const client = await execa('node', [
      '--input-type=module',
      '-e',
      `
      const response = await fetch(${JSON.stringify(`${gateway.url}/fn/srv-huge/huge`)});
      let received = 0;
      let aborted = false;
      try {
        for await (const chunk of response.body) received += chunk.length;
      } catch {
        aborted = true;
      }
      console.log(JSON.stringify({ status: response.status, received, aborted }));
    `,
    ]);
    const fast = rss.stop();
    const hugeMs = performance.now() - began;
    const { status, received, aborted } = JSON.parse(client.stdout) as { status: number; received: number; aborted: boolean };
    expect(status).toBe(200); // the head was out before the limit was passed
    expect(aborted).toBe(true);
    expect(received).toBeLessThanOrEqual(MAX_OUTPUT);
    expect(received).toBeGreaterThan(MAX_OUTPUT / 2);
    expect(fast.growthMiB).toBeLessThan(MAX_RSS_GROWTH_MIB);
    await waitUntil(() => gateway.logs.some((line) => / invocation function=srv-huge .*outcome=OUTPUT_LIMIT/.test(line)), 5000, 'the OUTPUT_LIMIT log line');
    // A client that reads nothing: the gateway holds no more than its buffers while the server writes.
    const slowRss = sampleRss();
    const socket = connect(gateway.server.port, '127.0.0.1');
    socket.write('GET /fn/srv-huge/huge HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    socket.pause();
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const slow = slowRss.stop();
    socket.destroy();
    expect(slow.growthMiB).toBeLessThan(MAX_RSS_GROWTH_MIB);
    // The instance serves on: its server's write ended with the connection.
    await readyInstance('srv-huge');
    const again = await fetch(`${gateway.url}/fn/srv-huge/`);
    expect(again.status).toBe(200);
    const figures = await hello.stop();
    expect(figures.failures).toBe(0);
    await report('serve: huge response', {
      receivedBytes: received,
      capBytes: MAX_OUTPUT,
      endedAfterMs: Math.round(hugeMs),
      MiBPerSecond: Math.round(received / 1048576 / (hugeMs / 1000)),
      rssGrowthMiB: Math.round(fast.growthMiB),
      unreadClientRssGrowthMiB: Math.round(slow.growthMiB),
      hello: figures,
    });
  });

  it('answers a response that is not HTTP with 502 FUNCTION_BAD_RESPONSE, and aborts one that breaks after its head', async () => {
    const hello = await alongside(gateway.url);
    const codes: Record<string, string> = {};
    for (const attack of ['garbage', 'bad-header', 'two-lengths', 'huge-header', 'close']) {
      const response = await fetch(`${gateway.url}/fn/srv-attack/${attack}`);
      const error = await errorOf(response);
      expect(response.status, attack).toBe(502);
      expect(error.code, `${attack}: ${error.message}`).toBe('FUNCTION_BAD_RESPONSE');
      // What fnix says of a bad answer depends on undici's error for it (gateway/proxy/http.ts explain()).
      expect(error.message).toContain("function 'srv-attack': its server ");
      if (attack === 'close') expect(error.message).toMatch(/closed the connection without an answer/);
      codes[attack] = error.message;
      const after = await fetch(`${gateway.url}/fn/srv-attack/`);
      expect(after.status, `after ${attack}`).toBe(200);
      await after.text();
    }
    for (const attack of ['short', 'bad-chunk']) {
      const response = await fetch(`${gateway.url}/fn/srv-attack/${attack}`);
      expect(response.status).toBe(200); // the head went out before the body broke
      await expect(response.text(), attack).rejects.toThrow();
      codes[attack] = 'connection aborted after the head';
      const after = await fetch(`${gateway.url}/fn/srv-attack/`);
      expect(after.status, `after ${attack}`).toBe(200);
      await after.text();
    }
    const figures = await hello.stop();
    expect(figures.failures).toBe(0);
    const metrics = await scrape(gateway.url);
    expect(metrics.value('fnix_invocations_total', { function: 'srv-attack', kind: 'http', outcome: 'FUNCTION_BAD_RESPONSE' })).toBeGreaterThanOrEqual(5);
    await report('serve: responses that are not HTTP', { ...codes, hello: figures });
  });

  it('passes a readiness probe answered with a body that never ends, without waiting for it', async () => {
    const entry = await functionEntry('srv-ready-endless');
    expect(entry.status).toBe('ready');
    const instance = await readyInstance('srv-ready-endless');
    expect(instance.startMs).toBeLessThan(10_000);
    const response = await fetch(`${gateway.url}/fn/srv-ready-endless/`);
    expect(response.status).toBe(200);
    expect(((await response.json()) as any).mode).toBe('ready-endless');
    await report('serve: readiness answered with an endless body', { ready: true, startMs: instance.startMs });
  });

  it.each([
    // The probe's last problem is what its message says: often the last probe's, tried with almost no time left.
    [
      'srv-ready-garbage',
      'bytes that never make a status line',
      /GET \/healthz got no HTTP answer|did not answer GET \/healthz on port 8080 within its startTimeoutMs of 1500 ms/,
    ],
    ['srv-ready-slow', 'a byte every half second', /was not answered within|within its startTimeoutMs of 1500 ms/],
  ])('holds %s (answering its probe with %s) not ready, and leaves nothing of it running', async (name, what, why) => {
    const entry = await functionEntry(name);
    expect(entry.status).toBe('broken');
    expect(entry.error.message).toContain(`function '${name}' did not start`);
    expect(entry.error.message).toMatch(why);
    expect(entry.instances).toBeUndefined();
    const response = await fetch(`${gateway.url}/fn/${name}/`);
    expect(response.status).toBeGreaterThanOrEqual(500);
    expect(await pidsOfFunction(name)).toEqual([]);
    await report(`serve: readiness answered with ${what}`, { held: 'broken', message: entry.error.message });
  });

  it('replaces an instance that answers its probe and holds every request, each time, and the gateway carries on', async () => {
    const hello = await alongside(gateway.url);
    const replaced: string[] = [];
    for (let n = 0; n < 2; n++) {
      const instance = await readyInstance('srv-probe-only', replaced.at(-1));
      const id = await containerId(instance.container);
      const response = await fetch(`${gateway.url}/fn/srv-probe-only/`);
      const error = await errorOf(response);
      expect(response.status).toBe(504);
      expect(error.code).toBe('FUNCTION_TIMEOUT');
      await waitUntil(() => containerGone(id), 15_000, `the container of ${instance.id} to be removed`);
      replaced.push(instance.id);
    }
    await readyInstance('srv-probe-only', replaced.at(-1));
    const figures = await hello.stop();
    expect(figures.failures).toBe(0);
    await report('serve: a server that answers its probe alone', { status: 504, instancesReplaced: replaced.length, hello: figures });
  });

  it('keeps the gateway healthy while a server becomes ready and exits again and again', async () => {
    // A gateway of its own: the instance is restarted for as long as it is served.
    const dir = await mkdtemp(join(tmpdir(), 'fnix-hostile-serve-loop-'));
    let looping: TestGateway | undefined;
    try {
      await cp(join(EXAMPLES_DIR, 'hello'), join(dir, 'hello'), { recursive: true });
      await writeServeFunction(dir, 'srv-exits', 'ready-then-exit');
      looping = await startTestGateway({ functionsDir: dir, poolSize: 2, maxContainers: 8 });
      const hello = await alongside(looping.url);
      const starts = async () => (await scrape(looping!.url)).value('fnix_serve_instance_starts_total', { function: 'srv-exits', outcome: 'ready' });
      const first = await starts();
      const began = performance.now();
      await new Promise((resolve) => setTimeout(resolve, 8000));
      const restarts = (await starts()) - first;
      const seconds = (performance.now() - began) / 1000;
      const figures = await hello.stop();
      expect(figures.failures).toBe(0);
      const health = await fetch(`${looping.url}/healthz`);
      expect(health.status).toBe(200);
      // Each start is a container's: a server that dies as soon as it is ready is restarted, with its containers removed.
      expect(restarts).toBeGreaterThan(0);
      await report('serve: a server that exits as soon as it is ready', {
        restarts,
        perSecond: Math.round((restarts / seconds) * 10) / 10,
        hello: figures,
      });
    } finally {
      await looping?.close();
      await rm(dir, { recursive: true, force: true });
    }
    expect(await pidsOfFunction('srv-exits')).toEqual([]);
  });

  it('says how many lines it did not log once the minute is over, and logs the server again', async () => {
    expect(flood.instance).not.toBe('');
    const warning = new RegExp(`\\[srv-flood ${flood.instance}\\] (\\d+) lines of output were not logged: over 1048576 bytes`);
    const waitMs = Math.max(0, flood.startedAt + 60_000 - Date.now()) + 15_000;
    await waitUntil(() => gateway.logs.some((line) => warning.test(line)), waitMs, 'the warning of lines not logged');
    const line = gateway.logs.find((l) => warning.test(l))!;
    expect(line).toMatch(/ WARN /);
    const dropped = Number(warning.exec(line)![1]);
    // Most of the 8192 lines of 1 KiB and the 1024 pieces of the long one.
    expect(dropped).toBeGreaterThan(7000);
    // A new minute: the trickle is logged again.
    await waitUntil(
      () => gateway.logs.slice(gateway.logs.indexOf(line)).some((l) => l.includes(`[srv-flood ${flood.instance}] trickle`)),
      5000,
      'the trickle to be logged',
    );
    // The instance flooded throughout and still answers.
    const response = await fetch(`${gateway.url}/fn/srv-flood/`);
    expect(response.status).toBe(200);
    expect(((await response.json()) as any).instance).toBe(flood.instance);
    await report('serve: lines not logged', { dropped, warnedAfterMs: Date.now() - flood.startedAt });
  });
});
