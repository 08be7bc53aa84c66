/**
 * @module
 * What the deployment history keeps (deployments/history.ts): which records chooseKept keeps, and the
 * sweep of `<state>/builds` on a real folder of read-only builds; and FNIX_HISTORY, the count, as
 * loadConfig reads it. The whole prune, with a real Nix collection, is history.podman.test.ts.
 */
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chooseKept, removeUnusedBuilds } from '../../deployments/history.ts';
import type { DeploymentRecord } from '../../deployments/records.ts';
import { ConfigError, loadConfig } from '../../gateway/config.ts';
import { thrownBy } from '../helpers/errors.ts';

/** A record made at minute `minute`, activated at the minutes given. */
function record(id: string, minute: number, activatedAt: number[] = [], result: DeploymentRecord['result'] = 'ready'): DeploymentRecord {
  const at = (m: number) => new Date(Date.UTC(2026, 0, 1, 0, m)).toISOString();
  return { id, commit: 'c'.repeat(40), subject: id, createdAt: at(minute), source: 'push', result, functions: [], activations: activatedAt.map(at) };
}

const ids = (records: DeploymentRecord[]) => records.map((r) => r.id);

describe('chooseKept', () => {
  // Newest first, as DeploymentStore.list gives them.
  const history = [record('d-5', 5, [5]), record('d-4', 4, [], 'refused'), record('d-3', 3, [3]), record('d-2', 2, [2, 4]), record('d-1', 1, [1])];

  it('keeps the newest `limit`, refused ones counted, and the one the active one replaced', () => {
    expect(ids(chooseKept(history, { limit: 2, activeId: 'd-5' }))).toEqual(['d-5', 'd-4', 'd-2']);
    expect(ids(chooseKept(history, { limit: 3, activeId: 'd-5' }))).toEqual(['d-5', 'd-4', 'd-3', 'd-2']);
  });

  it('keeps the active one and the one it replaced, however old (after a rollback)', () => {
    // d-3 was replaced by d-2 (a rollback), and d-2 by d-1 (another).
    const rolledBack = [record('d-3', 3, [3]), record('d-2', 2, [2, 4]), record('d-1', 1, [1, 5])];
    expect(ids(chooseKept(rolledBack, { limit: 1, activeId: 'd-1' }))).toEqual(['d-3', 'd-2', 'd-1']);
  });

  it('keeps all of a history shorter than the limit', () => {
    expect(ids(chooseKept(history, { limit: 50, activeId: 'd-5' }))).toEqual(ids(history));
    expect(chooseKept([], { limit: 1, activeId: 'd-1' })).toEqual([]);
  });
});

describe('removeUnusedBuilds', () => {
  let buildsDir: string;
  beforeEach(async () => {
    buildsDir = await mkdtemp(join(tmpdir(), 'fnix-builds-'));
  });
  afterEach(async () => {
    await chmodTree(buildsDir);
    await rm(buildsDir, { recursive: true, force: true });
  });

  /** A read-only build, as runtime/functions/build.ts leaves one: files 0444, folders 0555. */
  async function build(path: string): Promise<void> {
    const dir = join(buildsDir, path);
    await mkdir(join(dir, 'lib'), { recursive: true });
    await writeFile(join(dir, 'function.json'), '{}');
    await writeFile(join(dir, 'lib', 'data'), 'x');
    await chmod(join(dir, 'lib', 'data'), 0o444);
    await chmod(join(dir, 'lib'), 0o555);
    await chmod(dir, 0o555);
  }

  it('removes the read-only builds not kept, and the function folders left empty', async () => {
    await build('echo/aaaaaaaaaaaa');
    await build('echo/bbbbbbbbbbbb');
    await build('gone/cccccccccccc');
    const removed = await removeUnusedBuilds(buildsDir, ['echo/aaaaaaaaaaaa', 'other/dddddddddddd']);
    expect(removed.sort()).toEqual(['echo/bbbbbbbbbbbb', 'gone/cccccccccccc']);
    expect((await readdir(buildsDir)).sort()).toEqual(['echo']);
    expect(await readdir(join(buildsDir, 'echo'))).toEqual(['aaaaaaaaaaaa']);
    expect(await readdir(join(buildsDir, 'echo', 'aaaaaaaaaaaa', 'lib'))).toEqual(['data']);
  });

  it('leaves alone what is not named like a build: half-copied builds, other names', async () => {
    await build('echo/aaaaaaaaaaaa.123.456.tmp');
    await build('echo/not-a-version');
    await build('Not_A_Function/aaaaaaaaaaaa');
    await writeFile(join(buildsDir, 'notes.txt'), 'mine');
    expect(await removeUnusedBuilds(buildsDir, [])).toEqual([]);
    expect((await readdir(buildsDir)).sort()).toEqual(['Not_A_Function', 'echo', 'notes.txt']);
    expect((await readdir(join(buildsDir, 'echo'))).sort()).toEqual(['aaaaaaaaaaaa.123.456.tmp', 'not-a-version']);
  });

  it('takes a missing builds folder as empty', async () => {
    expect(await removeUnusedBuilds(join(buildsDir, 'missing'), [])).toEqual([]);
  });
});

describe('FNIX_HISTORY', () => {
  it('is unset by default, which the deployments take as 50', () => {
    expect(loadConfig({}).historyLimit).toBeUndefined();
    expect(loadConfig({ FNIX_HISTORY: '' }).historyLimit).toBeUndefined();
  });

  it('reads a count from 1 to 10000', () => {
    expect(loadConfig({ FNIX_HISTORY: '1' }).historyLimit).toBe(1);
    expect(loadConfig({ FNIX_HISTORY: ' 10000 ' }).historyLimit).toBe(10_000);
  });

  it.each(['0', '10001', '-1', '2.5', 'all'])('refuses %j, naming the variable and the value', (value) => {
    const error = thrownBy(() => loadConfig({ FNIX_HISTORY: value }), ConfigError);
    expect(error.message).toContain(`FNIX_HISTORY=${JSON.stringify(value)}`);
  });
});

/** Makes every folder under `dir` writable again, so that the test can remove it. */
async function chmodTree(dir: string): Promise<void> {
  await chmod(dir, 0o755).catch(() => {});
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (entry.isDirectory()) await chmodTree(join(dir, entry.name));
  }
}
