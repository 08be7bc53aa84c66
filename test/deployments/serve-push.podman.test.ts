/**
 * @module
 * Deploying a serve function by git push, against a real gateway: a server that never becomes ready
 * is refused (the push fails, saying why with the server's stderr, and nothing served changes or is
 * left running); a new version pushed under steady load loses no request and never answers with the
 * old version once the new one has; the new version's minInstances are ready before the switch; a
 * rollback serves the old version again from fresh instances, and a restart brings them back.
 *
 * The function is test/fixtures/serve-deploy/server.py, which answers with its version, its instance
 * and when its process started. Its processes carry this run's SD_RUN in their environment, so that
 * the host's process table says which of them are still running.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, TEST_TOKEN, type TestGateway } from '../helpers/gateway.ts';
import { git } from '../helpers/git.ts';
import { pidsWithEnv, waitUntil } from '../helpers/processes.ts';
import type { InstanceInfo } from '../../runtime/serve/instances.ts';

const SERVER = fileURLToPath(new URL('../fixtures/serve-deploy/server.py', import.meta.url));
/** This run's own: in every server's environment. */
const RUN = randomBytes(6).toString('hex');
const NAME = 'web';
const MIN_INSTANCES = 2;
/** Client loops sending requests one after another for the whole push under load. */
const LOOPS = 4;
/** How long the request in flight across the push under load takes: far longer than a push here (1-3 s). */
const SLOW_MS = 12_000;

let gateway: TestGateway;
let stateDir: string;
let work: string;
let clone: string;

const api = async (path: string, init: RequestInit = {}) => {
  const response = await fetch(`${gateway.url}/api${path}`, { ...init, headers: { authorization: `Bearer ${TEST_TOKEN}`, ...init.headers } });
  return { status: response.status, body: (await response.json()) as any };
};

/** What the server answers (test/fixtures/serve-deploy/server.py). */
interface Answer {
  version: number;
  instance: string;
  startedMs: number;
  pid: number;
}

/** One instance, as GET /api/functions/<name> lists it. */
type Instance = InstanceInfo;

async function ask(): Promise<{ status: number; answer: Answer }> {
  const response = await fetch(`${gateway.url}/fn/${NAME}/`);
  const text = await response.text();
  return { status: response.status, answer: response.status === 200 ? (JSON.parse(text) as Answer) : (JSON.parse(text) as any) };
}

/** The function as the admin API shows it: its served version and deployment, and its instances. */
async function served(): Promise<{ version: string; deployment: string; instances: Instance[] }> {
  const { status, body } = await api(`/functions/${NAME}`);
  expect(status, JSON.stringify(body)).toBe(200);
  return body;
}

/** Host pids of this run's server processes with `name=value` in their environment too. */
async function serverPids(name?: string, value?: string): Promise<number[]> {
  const ours = await pidsWithEnv('SD_RUN', RUN);
  if (name === undefined) return ours;
  const marked = new Set(await pidsWithEnv(name, value!));
  return ours.filter((pid) => marked.has(pid));
}

/** Writes `functions/web/` into `dir`: the server at `version`, with `manifest`'s fields over the usual ones. */
async function writeServer(dir: string, version: number, manifest: Record<string, unknown> = {}): Promise<void> {
  const folder = join(dir, 'functions', NAME);
  await mkdir(folder, { recursive: true });
  await copyFile(SERVER, join(folder, 'server.py'));
  const { env, serve, ...rest } = manifest as { env?: Record<string, string>; serve?: Record<string, unknown> };
  await writeFile(
    join(folder, 'function.json'),
    JSON.stringify({
      packages: ['python3'],
      command: ['python3', '-S', 'server.py'],
      env: { SD_RUN: RUN, SD_VERSION: String(version), ...env },
      serve: { port: 8080, readyPath: '/healthz', concurrency: 2, minInstances: MIN_INSTANCES, maxInstances: 4, ...serve },
      timeoutMs: 30_000,
      memoryMb: 128,
      ...rest,
    }),
  );
}

async function commitAndPush(message: string) {
  await git(clone, 'add', '--all');
  await git(clone, 'commit', '--quiet', '-m', message);
  return git(clone, 'push', 'origin', 'main');
}

/** The podman id of the container a host process runs in. */
async function containerOf(pid: number): Promise<string | undefined> {
  return /libpod-([0-9a-f]{64})/.exec(await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => ''))?.[1];
}

const containerGone = async (id: string) => (await execa('podman', ['ps', '-aq', '--no-trunc', '--filter', `id=${id}`])).stdout.trim() === '';

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fnix-serve-push-'));
  stateDir = await mkdtemp(join(tmpdir(), 'fnix-serve-push-state-'));
  const initial = join(work, 'initial');
  await writeServer(initial, 1);
  // Room for two versions' instances at once, a check's, and the warm pool.
  gateway = await startTestGateway({ stateDir, functionsDir: join(initial, 'functions'), maxContainers: 24 });
  clone = join(work, 'clone');
  const remote = `${gateway.url.replace('http://', `http://fnix:${TEST_TOKEN}@`)}/git/functions.git`;
  const cloned = await git(work, 'clone', '--quiet', remote, clone);
  expect(cloned.exitCode, cloned.all).toBe(0);
});

afterAll(async () => {
  await gateway?.close();
  await rm(work, { recursive: true, force: true });
  await rm(stateDir, { recursive: true, force: true });
});

describe('a serve function that never becomes ready', () => {
  const variants: Array<[string, Record<string, unknown>, RegExp, string]> = [
    [
      'prints to stderr and sleeps',
      {
        packages: ['busybox'],
        command: ['busybox', 'sh', '-c', "echo 'boom: bad config' >&2; exec sleep 30"],
        env: { SD_VARIANT: 'sleeps' },
        serve: { startTimeoutMs: 2000 },
      },
      /did not answer GET \/healthz on port 8080 within its startTimeoutMs of 2000 ms/,
      'boom: bad config',
    ],
    [
      'exits 1',
      {
        packages: ['busybox'],
        command: ['busybox', 'sh', '-c', "echo 'boom: no database' >&2; exit 1"],
        env: { SD_VARIANT: 'exits' },
        serve: { startTimeoutMs: 2000 },
      },
      /its server exited with code 1 before it was ready/,
      'boom: no database',
    ],
    [
      'listens on the wrong port',
      { env: { SD_VARIANT: 'wrong-port', SD_PORT_OFFSET: '1' }, serve: { startTimeoutMs: 2000 } },
      /did not answer GET \/healthz on port 8080 within its startTimeoutMs of 2000 ms \(last probe: nothing listens on the port\)/,
      'version 9 listening on 127.0.0.1:8081',
    ],
  ];

  it.each(variants)('refuses a push of one that %s, with its stderr, and changes nothing served', async (_what, manifest, why, stderr) => {
    const before = await served();
    expect(before.instances.filter((i) => i.state === 'ready').length).toBeGreaterThanOrEqual(MIN_INSTANCES);
    const variant = (manifest['env'] as Record<string, string>)['SD_VARIANT']!;
    await writeServer(clone, 9, manifest);
    await git(clone, 'add', '--all');
    await git(clone, 'commit', '--quiet', '-m', `never ready: ${variant}`);
    const push = git(clone, 'push', 'origin', 'main');
    // Its check's container, caught while the server runs (the one that exits at once may not be).
    let container: string | undefined;
    let pushing = true;
    void push.finally(() => (pushing = false));
    while (!container && pushing) {
      const [pid] = await serverPids('SD_VARIANT', variant);
      if (pid !== undefined) container = await containerOf(pid);
      else await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const pushed = await push;
    expect(pushed.exitCode, pushed.all).not.toBe(0);
    expect(pushed.all).toContain('pre-receive hook declined');
    expect(pushed.all).toContain('the functions being served are unchanged');
    const refusal = pushed.all.split('\n').find((line: string) => line.startsWith(`remote:   functions/${NAME}: `));
    expect(refusal, pushed.all).toBeDefined();
    expect(refusal).toContain(`function '${NAME}' did not start`);
    expect(refusal).toMatch(why);
    expect(refusal).toContain(`its stderr ends with: ${stderr}`);
    // The record says the same.
    const { body } = await api('/deployments');
    const record = body.deployments[0];
    expect(record.status).toBe('refused');
    expect(record.reason).toMatch(why);
    expect(record.reason).toContain(stderr);
    // Nothing of it runs: its check's server and container are gone.
    await waitUntil(async () => (await serverPids('SD_VARIANT', variant)).length === 0, 10_000, "the check's server to be gone");
    if (variant !== 'exits') expect(container, 'the check container was seen').toBeDefined();
    if (container) await waitUntil(() => containerGone(container!), 10_000, "the check's container to be removed");
    // What is served is what was: the same deployment, version and instances, answering as before.
    const after = await served();
    expect(after.deployment).toBe(before.deployment);
    expect(after.version).toBe(before.version);
    expect(after.instances.map((i) => i.id).sort()).toEqual(before.instances.map((i) => i.id).sort());
    expect(after.instances.every((i) => i.version === before.version)).toBe(true);
    const health = (await (await fetch(`${gateway.url}/healthz`)).json()) as any;
    const listed: Instance[] = health.functions.find((f: any) => f.name === NAME).instances;
    expect(listed.map((i) => i.id).sort()).toEqual(before.instances.map((i) => i.id).sort());
    const { status, answer } = await ask();
    expect(status).toBe(200);
    expect(answer.version).toBe(1);
    expect(before.instances.map((i) => i.id)).toContain(answer.instance);
    await git(clone, 'reset', '--quiet', '--hard', 'origin/main');
  });
});

describe('a push under steady load', () => {
  /** Instance ids that answered for version 1, for the rollback below to tell fresh ones from. */
  const v1Instances = new Set<string>();

  it('loses no request, and switches from version 1 to 2 once, never back', async () => {
    const before = await served();
    interface Sample {
      loop: number;
      sentAt: number;
      receivedAt: number;
      status: number;
      version?: number;
      instance?: string;
      error?: string;
    }
    const samples: Sample[] = [];
    let running = true;
    const loops = Array.from({ length: LOOPS }, async (_, loop) => {
      while (running) {
        const sentAt = performance.now();
        try {
          const { status, answer } = await ask();
          samples.push({ loop, sentAt, receivedAt: performance.now(), status, version: answer.version, instance: answer.instance });
          if (status !== 200) samples[samples.length - 1]!.error = JSON.stringify(answer);
        } catch (error) {
          samples.push({ loop, sentAt, receivedAt: performance.now(), status: 0, error: String(error) });
        }
      }
    });
    const stopLoops = async () => {
      running = false;
      await Promise.all(loops);
    };
    try {
      await waitUntil(() => samples.length >= 40, 20_000, 'the load to be under way');
      // And one request that version 1 is still answering when the push is over.
      let slowDone = false;
      const slow = fetch(`${gateway.url}/fn/${NAME}/slow?ms=${SLOW_MS}`).then(async (response) => {
        slowDone = true;
        return { status: response.status, answer: (await response.json()) as Answer };
      });
      await writeServer(clone, 2);
      const pushBegan = performance.now();
      const pushed = await commitAndPush('version 2');
      const pushMs = performance.now() - pushBegan;
      expect(pushed.exitCode, pushed.all).toBe(0);
      expect(slowDone, `the push took ${Math.round(pushMs)} ms, the slow request ${SLOW_MS} ms`).toBe(false);
      // Version 1 is no longer served, but its instance holding the slow request is still there.
      const holding = (await served()).instances.filter((i) => i.version === before.version && i.inFlight > 0);
      expect(holding.length, 'a version 1 instance still serving').toBeGreaterThanOrEqual(1);
      expect(pushed.all).toMatch(new RegExp(`remote: functions/${NAME}: its server started and answered /healthz`));
      expect(pushed.all).toMatch(new RegExp(`remote: deployment d-[\\w-]+ is live: ${NAME}`));
      // On until every loop has had answers from version 2 for a while.
      const after = samples.length;
      await waitUntil(
        () => Array.from({ length: LOOPS }, (_, loop) => samples.slice(after).filter((s) => s.loop === loop && s.version === 2).length >= 10).every(Boolean),
        20_000,
        'every loop to be answered by version 2',
      );
      await stopLoops();

      const failed = samples.filter((s) => s.status !== 200);
      expect(failed.slice(0, 5), `${failed.length} of ${samples.length} requests failed`).toEqual([]);
      for (let loop = 0; loop < LOOPS; loop++) {
        const versions = samples.filter((s) => s.loop === loop).map((s) => s.version!);
        expect(versions[0], `loop ${loop}`).toBe(1);
        expect(versions.at(-1), `loop ${loop}`).toBe(2);
        // Once 2, never 1 again.
        const switched = versions.indexOf(2);
        expect(
          versions.slice(switched).every((v) => v === 2),
          `loop ${loop} went back to version 1`,
        ).toBe(true);
      }
      // Across loops: a request sent after any client had an answer from version 2 is answered by version 2.
      const firstV2 = Math.min(...samples.filter((s) => s.version === 2).map((s) => s.receivedAt));
      const lateV1 = samples.filter((s) => s.sentAt > firstV2 && s.version === 1);
      expect(lateV1).toEqual([]);
      for (const s of samples) if (s.version === 1) v1Instances.add(s.instance!);
      // The slow request finishes on the version it started with, long after the switch.
      const slowAnswer = await slow;
      expect(slowAnswer.status).toBe(200);
      expect(slowAnswer.answer.version).toBe(1);
      expect(holding.map((i) => i.id)).toContain(slowAnswer.answer.instance);
      // Then version 1 drains: its instances stop, their processes go.
      const now = await served();
      expect(now.version).not.toBe(before.version);
      const drainMs = await waitUntil(
        async () => (await served()).instances.every((i) => i.version === now.version) && (await serverPids('SD_VERSION', '1')).length === 0,
        20_000,
        "version 1's instances to drain",
      );
      const v2Ready = (await served()).instances.filter((i) => i.state === 'ready').length;
      expect(v2Ready).toBeGreaterThanOrEqual(MIN_INSTANCES);
      const count = (version: number) => samples.filter((s) => s.version === version).length;
      console.log(
        `serve push under load: ${samples.length} requests from ${LOOPS} loops, ${count(1)} answered by version 1 and ${count(2)} by version 2, ` +
          `${failed.length} failed; push ${Math.round(pushMs)} ms; version 1's ${v1Instances.size} instances drained ${Math.round(drainMs)} ms after the last (${SLOW_MS} ms) request on it ended`,
      );
    } finally {
      await stopLoops();
    }
  });

  it("has the new version's minInstances ready before the switch: the first request finds a server already running", async () => {
    await writeServer(clone, 3);
    const pushed = await commitAndPush('version 3');
    expect(pushed.exitCode, pushed.all).toBe(0);
    // Before any request: the served version's minInstances are ready.
    const now = await served();
    const ready = now.instances.filter((i) => i.version === now.version && i.state === 'ready');
    expect(ready.length, JSON.stringify(now.instances)).toBeGreaterThanOrEqual(MIN_INSTANCES);
    const sentAt = Date.now();
    const { status, answer } = await ask();
    expect(status).toBe(200);
    expect(answer.version).toBe(3);
    // Answered by one of those, whose process had started before the request was sent.
    expect(ready.map((i) => i.id)).toContain(answer.instance);
    expect(answer.startedMs).toBeLessThan(sentAt);
    const instance = ready.find((i) => i.id === answer.instance)!;
    expect(Date.parse(instance.startedAt)).toBeLessThan(sentAt);
    expect(instance.requests).toBe(0);
    await waitUntil(async () => (await serverPids('SD_VERSION', '2')).length === 0, 20_000, "version 2's instances to drain");
  });

  it('rolls back to version 1 through the admin API, served by fresh instances', async () => {
    const { body } = await api('/deployments');
    const first = body.deployments.find((d: any) => d.source === 'import');
    expect(first).toBeDefined();
    const began = Date.now();
    const back = await api(`/deployments/${first.id}/activate`, { method: 'POST' });
    expect(back.status, JSON.stringify(back.body)).toBe(200);
    expect(back.body.status).toBe('active');
    const now = await served();
    expect(now.deployment).toBe(first.id);
    const ready = now.instances.filter((i) => i.version === now.version && i.state === 'ready');
    expect(ready.length).toBeGreaterThanOrEqual(MIN_INSTANCES);
    for (let n = 0; n < 4; n++) {
      const { status, answer } = await ask();
      expect(status).toBe(200);
      expect(answer.version).toBe(1);
      expect(v1Instances.has(answer.instance), `${answer.instance} answered before the push`).toBe(false);
      expect(answer.startedMs).toBeGreaterThanOrEqual(began - 1000); // clocks: the host's and the container's are one
    }
    await waitUntil(async () => (await serverPids('SD_VERSION', '3')).length === 0, 20_000, "version 3's instances to drain");
  });
});

describe('a restart on the same state folder', () => {
  it('stops the instances with the gateway, and brings the active version back with its minInstances', async () => {
    await gateway.close();
    // close() waits for the instances to end: no server of this run is left.
    await waitUntil(async () => (await serverPids()).length === 0, 15_000, 'every server to be gone');
    const other = join(work, 'other');
    await writeServer(other, 7); // the functions folder is only the first import: the deployment is what is served
    const began = Date.now();
    gateway = await startTestGateway({ stateDir, functionsDir: join(other, 'functions'), maxContainers: 24 });
    const now = await served();
    const ready = now.instances.filter((i) => i.state === 'ready');
    expect(ready.length, JSON.stringify(now.instances)).toBeGreaterThanOrEqual(MIN_INSTANCES);
    const { status, answer } = await ask();
    expect(status).toBe(200);
    expect(answer.version).toBe(1);
    expect(ready.map((i) => i.id)).toContain(answer.instance);
    expect(answer.startedMs).toBeGreaterThanOrEqual(began - 1000);
    expect(await serverPids('SD_VERSION', '1')).toHaveLength(ready.length);
  });
});
