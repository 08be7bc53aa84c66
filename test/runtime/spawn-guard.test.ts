/**
 * @module
 * runtime/spawn-guard.ts: a process start that finds no file descriptor left fails that start, with
 * its errno code, and the process goes on (execa 9 alone lets Node's late 'error' end it). Each case
 * runs in a Node process of its own under `prlimit --nofile=256`: the script uses up whatever the
 * limit is, and at 64 tsx itself sometimes ran short while loading it (a module 'not found').
 */
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SCRIPT = 'test/fixtures/scripts/spawn-without-descriptors.ts';
const run = (...args: string[]) =>
  execa('prlimit', ['--nofile=256:256', '--', 'node', '--import', 'tsx', SCRIPT, ...args], { cwd: ROOT, reject: false, all: true });

describe('guardSpawn', () => {
  it('turns a spawn with no descriptor left into a rejected start (EMFILE), and the process goes on', async () => {
    const result = await run('--guard');
    expect(result.exitCode, result.all).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ exhausted: 'EMFILE', afterFreeing: 'ran' });
  });

  it('is needed: without it, the same start ends the process with an uncaught error', async () => {
    const result = await run();
    expect(result.exitCode).not.toBe(0);
    expect(result.all).toMatch(/spawn true EMFILE/);
  });
});
