/**
 * @module
 * The deployment history kept (deployments/history.ts), through a real gateway, real pushes and a real
 * Nix collection: with FNIX_HISTORY at 3, the builds and GC roots of the deployments pruned go, those of
 * the kept ones stay, and a refused push's are not kept. Each deployment's function uses a package of
 * its own from a package set of this test's, whose store paths no other test has, so that `nix-store
 * --delete` (Nix's own liveness check, on those paths alone: the store is shared with tests running
 * beside this one, so never a whole collection) can say which are still alive. A rollback to a kept
 * deployment still works, and a restart removes what a dead process left.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeploymentRecord } from '../../deployments/records.ts';
import { STARTER_SET_DIR } from '../../runtime/nix/package-set.ts';
import { startTestGateway, TEST_TOKEN, type TestGateway } from '../helpers/gateway.ts';
import { GIT_ENV, git } from '../helpers/git.ts';

/** This run's own: in every package's name and contents, so that its store paths are this run's alone. */
const RUN = randomBytes(6).toString('hex');
/** Packages `mark0` to `mark5`; each prints `<RUN>-<n>`. */
const MARKS = 6;
const HISTORY = 3;

let gateway: TestGateway;
let stateDir: string;
let work: string;
let setDir: string;
let clone: string;

/** What the test keeps of each deployment: its record, and its function's build and package. */
interface Deployed {
  record: DeploymentRecord;
  version: string;
  rootKey: string;
  storePath: string;
}
const deployed = new Map<string, Deployed>();

/** What `label` deployed (remembered by {@link remember}). */
function of(label: string): Deployed {
  const found = deployed.get(label);
  if (!found) throw new Error(`no deployment ${label} was made`);
  return found;
}

const invoke = async (name: string) => (await fetch(`${gateway.url}/fn/${name}`)).text();
const buildsOf = async (name: string) => (await readdir(join(stateDir, 'builds', name)).catch(() => [])).sort();
const roots = async () => (await readdir(join(stateDir, 'gcroots')).catch(() => [])).filter((key) => /^[0-9a-f]{32}$/.test(key)).sort();

/** The package set: the starter set, and `markN`, built by busybox as the starter set's packages are. */
function packageSet(): string {
  const marks = Array.from({ length: MARKS }, (_, n) => `  mark${n} = mark "${n}";`).join('\n');
  return `# Written by test/deployments/history.podman.test.ts, run ${RUN}.
{ ... }:
let
  starter = import ${STARTER_SET_DIR} { };
  bb = "\${starter.busybox}/bin";
  mark = n: derivation {
    name = "fnix-history-${RUN}-\${n}";
    system = builtins.currentSystem;
    builder = "\${starter.bash}/bin/bash";
    args = [ "-c" ''
      \${bb}/mkdir -p $out/bin
      echo '#!\${bb}/sh' > $out/bin/mark
      echo 'echo ${RUN}-\${n}' >> $out/bin/mark
      \${bb}/chmod 0555 $out/bin/mark
    '' ];
  };
in
starter // {
${marks}
}
`;
}

/** Writes `functions/<name>/` into `dir`, running `command` with `packages`. */
async function writeFunction(dir: string, name: string, packages: string[], command: string[]): Promise<void> {
  const folder = join(dir, 'functions', name);
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, 'function.json'), JSON.stringify({ packages, command }));
}

/** Commits the clone's functions as they are and pushes main; resolves with git's result. */
async function commitAndPush(message: string) {
  await git(clone, 'add', '--all');
  await git(clone, 'commit', '--quiet', '-m', message);
  return git(clone, 'push', 'origin', 'main');
}

/** Keeps what the newest deployment is, under `label`. */
async function remember(label: string): Promise<Deployed> {
  const record = (await gateway.deployments.records.list())[0]!;
  const hist = record.functions.find((f) => f.name === 'hist')!;
  const remembered = { record, version: hist.version, rootKey: hist.rootKey, storePath: hist.storePaths[0]! };
  deployed.set(label, remembered);
  return remembered;
}

/** `nix-store --delete <path>`: Nix's collector, on this path alone; it refuses a path that is still alive. */
const deletePath = (path: string) => execa('nix-store', ['--delete', path], { reject: false, all: true });

/**
 * Deletes `path`, trying again for a while: a container of the version it was for may still be going
 * (its processes' environment names the path, and Nix counts that as a root, rightly).
 */
async function deleteWhenFree(path: string, timeoutMs = 20_000) {
  const begin = performance.now();
  for (;;) {
    const result = await deletePath(path);
    if (result.exitCode === 0 || performance.now() - begin > timeoutMs) return result;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Expects `path` to be alive because of the GC root `<state>/gcroots/<rootKey>/`, and Nix to refuse to delete it. */
async function expectKeptByRoot(path: string, rootKey: string): Promise<void> {
  const why = await execa('nix-store', ['--query', '--roots', path], { reject: false });
  expect(why.stdout).toContain(`${join(stateDir, 'gcroots', rootKey)}/`);
  const refused = await deletePath(path);
  expect(refused.exitCode, refused.all).not.toBe(0);
  expect(refused.all).toMatch(/since it is still alive/);
  expect(existsSync(path)).toBe(true);
}

/** Expects Nix to delete `path`: nothing roots it any more. */
async function expectCollected(path: string): Promise<void> {
  expect(existsSync(path), `${path} was never built`).toBe(true);
  const deleted = await deleteWhenFree(path);
  expect(deleted.exitCode, deleted.all).toBe(0);
  expect(existsSync(path)).toBe(false);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fnix-history-'));
  stateDir = await mkdtemp(join(tmpdir(), 'fnix-history-state-'));
  setDir = join(work, 'set');
  await mkdir(setDir);
  await writeFile(join(setDir, 'default.nix'), packageSet());
  const initial = join(work, 'initial');
  await writeFunction(initial, 'hist', ['mark0'], ['mark']);
  gateway = await startTestGateway({ stateDir, functionsDir: join(initial, 'functions'), packages: setDir, historyLimit: HISTORY });
  clone = join(work, 'clone');
  const remote = `${gateway.url.replace('http://', `http://fnix:${TEST_TOKEN}@`)}/git/functions.git`;
  const cloned = await git(work, 'clone', '--quiet', remote, clone);
  expect(cloned.exitCode, cloned.all).toBe(0);
});

afterAll(async () => {
  await gateway?.close();
  await rm(stateDir, { recursive: true, force: true }); // its GC roots with it
  // The store paths this run made: each output, then the derivation that made it.
  for (let n = 0; n < MARKS; n++) {
    const drv = (await execa('nix-instantiate', [setDir, '-A', `mark${n}`], { reject: false })).stdout.trim();
    const out = drv ? (await execa('nix-store', ['--query', '--outputs', drv], { reject: false })).stdout.trim() : '';
    if (out && existsSync(out)) await deleteWhenFree(out, 5000);
    if (drv) await deletePath(drv);
  }
  await rm(work, { recursive: true, force: true });
});

describe('more deployments than FNIX_HISTORY', () => {
  it('pushes four more deployments after the first import, one of them refused', async () => {
    expect(await invoke('hist')).toBe(`${RUN}-0\n`);
    await remember('d0');
    for (const [label, n] of [
      ['d1', 1],
      ['refused', 4],
      ['d2', 2],
      ['d3', 3],
    ] as const) {
      await writeFunction(clone, 'hist', [`mark${n}`], ['mark']);
      // The refused push: its function builds (and is rooted), but another does not.
      if (label === 'refused') await writeFunction(clone, 'bad', [`mark${n}`], ['./missing']);
      else await rm(join(clone, 'functions', 'bad'), { recursive: true, force: true });
      const pushed = await commitAndPush(label);
      expect(pushed.exitCode !== 0, pushed.all).toBe(label === 'refused');
      if (label === 'refused') await git(clone, 'reset', '--quiet', '--hard', 'origin/main');
      const { record } = await remember(label);
      expect(record.result).toBe(label === 'refused' ? 'refused' : 'ready');
    }
    expect(await invoke('hist')).toBe(`${RUN}-3\n`);
  });

  it('keeps the newest three records, and only their refs', async () => {
    const kept = (await gateway.deployments.records.list()).map((r) => r.id);
    expect(kept).toEqual(['d3', 'd2', 'refused'].map((label) => of(label).record.id));
    const refs = await execa('git', ['--git-dir', gateway.deployments.repository.gitDir, 'for-each-ref', '--format=%(refname:lstrip=3)', 'refs/fnix/'], {
      env: GIT_ENV,
    });
    expect(refs.stdout.split('\n').sort()).toEqual([of('d2').record.id, of('d3').record.id].sort());
  });

  it('keeps the builds and GC roots of the kept ready deployments, and no others', async () => {
    const [d0, d1, refused, d2, d3] = ['d0', 'd1', 'refused', 'd2', 'd3'].map(of) as [Deployed, Deployed, Deployed, Deployed, Deployed];
    for (const gone of [d0, d1, refused]) expect([d2.version, d3.version]).not.toContain(gone.version);
    expect(await buildsOf('hist')).toEqual([d2.version, d3.version].sort());
    // The refused push's other function never built: it has no build to keep.
    expect(await buildsOf('bad')).toEqual([]);
    expect(await roots()).toEqual([d2.rootKey, d3.rootKey].sort());
  });

  it("lets Nix collect the pruned and the refused deployments' packages, and refuses to collect the kept ones'", async () => {
    const [d0, d1, refused, d2, d3] = ['d0', 'd1', 'refused', 'd2', 'd3'].map(of) as [Deployed, Deployed, Deployed, Deployed, Deployed];
    // Every deployment's package is a store path of its own.
    expect(new Set([d0, d1, refused, d2, d3].map((d) => d.storePath)).size).toBe(5);
    await expectKeptByRoot(d3.storePath, d3.rootKey); // the active one
    await expectKeptByRoot(d2.storePath, d2.rootKey);
    for (const gone of [d0, d1, refused]) await expectCollected(gone.storePath);
  });

  it('rolls back to a kept deployment, keeping the one it replaced', async () => {
    const [d2, d3] = [of('d2'), of('d3')];
    const response = await fetch(`${gateway.url}/api/deployments/${d2.record.id}/activate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_TOKEN}` },
    });
    expect(response.status).toBe(200);
    expect(await invoke('hist')).toBe(`${RUN}-2\n`);
    expect(await buildsOf('hist')).toEqual([d2.version, d3.version].sort());
    await expectKeptByRoot(d3.storePath, d3.rootKey);
    await expectKeptByRoot(d2.storePath, d2.rootKey);
  });
});

describe('a restart', () => {
  it('removes the builds and GC roots a dead process left, and keeps the rest', async () => {
    await gateway.close();
    // A build and a GC root that no record names, as a push killed between its builds and its record leaves them.
    const strayBuild = join(stateDir, 'builds', 'hist', '0123456789ab');
    await mkdir(strayBuild, { recursive: true });
    await writeFile(join(strayBuild, 'function.json'), '{}');
    await chmod(strayBuild, 0o555);
    const strayKey = 'f'.repeat(32);
    await mkdir(join(stateDir, 'gcroots', strayKey), { recursive: true });
    const built = await execa(
      'nix-build',
      ['--option', 'substituters', '', setDir, '-A', 'mark5', '--out-link', join(stateDir, 'gcroots', strayKey, 'result')],
      {
        reject: false,
        all: true,
      },
    );
    expect(built.exitCode, built.all).toBe(0);
    const stray = built.stdout.trim();
    await expectKeptByRoot(stray, strayKey);

    gateway = await startTestGateway({ stateDir, functionsDir: join(work, 'initial', 'functions'), packages: setDir, historyLimit: HISTORY });
    const [d2, d3] = [of('d2'), of('d3')];
    expect(await invoke('hist')).toBe(`${RUN}-2\n`);
    expect(await buildsOf('hist')).toEqual([d2.version, d3.version].sort());
    expect(await roots()).toEqual([d2.rootKey, d3.rootKey].sort());
    await expectCollected(stray);
    await expectKeptByRoot(d2.storePath, d2.rootKey);
    await expectKeptByRoot(d3.storePath, d3.rootKey);
  });
});
