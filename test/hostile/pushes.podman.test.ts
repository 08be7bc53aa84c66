/**
 * @module
 * Pushes that fail while their files are written, against a real gateway whose state folder is a small
 * tmpfs the test mounts: a file larger than the space left, a file name longer than file systems take,
 * and a start on a disk that a dead push filled. Each must be refused (or cleaned) with the cause named,
 * and the gateway must go on serving.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES_DIR, startTestGateway, TEST_TOKEN, type TestGateway } from '../helpers/gateway.ts';
import { GIT_ENV, git } from '../helpers/git.ts';
import { alongside, report } from './helpers.ts';

const TMPFS_MB = 20;
let work: string;
let stateDir: string;
let gateway: TestGateway | undefined;

const remote = () => `${gateway!.url.replace('http://', `http://fnix:${TEST_TOKEN}@`)}/git/functions.git`;
const objectsDir = () => join(stateDir, 'git', 'functions.git', 'objects');

/** Paths a push leaves while it runs: git's quarantine folders and fnix's staging folder. */
async function pushLeftovers(): Promise<string[]> {
  const quarantines = (await readdir(objectsDir())).filter((name) => name.startsWith('tmp_objdir-'));
  const staged = await readdir(join(stateDir, 'staging'));
  return [...quarantines, ...staged.map((name) => `staging/${name}`)];
}

async function freeBytes(): Promise<number> {
  const { stdout } = await execa('df', ['--output=avail', '-B1', stateDir]);
  return Number(stdout.split('\n')[1]);
}

/** A clone of what is deployed, to commit onto. */
async function clone(): Promise<string> {
  const dir = await mkdtemp(join(work, 'clone-'));
  const result = await git(work, 'clone', '--quiet', remote(), dir);
  expect(result.exitCode, result.all).toBe(0);
  return dir;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fnix-hostile-push-'));
  stateDir = join(work, 'state');
  await mkdir(stateDir);
  await execa('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_MB}m,mode=0700`, 'fnix-test-state', stateDir]);
  gateway = await startTestGateway({ stateDir, functionsDir: EXAMPLES_DIR });
});
afterAll(async () => {
  try {
    await gateway?.close();
  } finally {
    // Lazily, should something still hold it: a mount must not outlive the test.
    if ((await execa('umount', [stateDir], { reject: false })).exitCode !== 0) await execa('umount', ['-l', stateDir], { reject: false });
    await rm(work, { recursive: true, force: true });
  }
});

describe('pushes that fail while their files are written', () => {
  it(`refuses a push whose file does not fit the disk (a ${TMPFS_MB} MB tmpfs), names it, and goes on serving`, async () => {
    const hello = await alongside(gateway!.url);
    const dir = await clone();
    const free = await freeBytes();
    // Larger than what is left once git holds its pack in quarantine: the copy fnix writes runs out.
    const size = Math.floor(free * 0.8);
    await writeFile(join(dir, 'functions', 'hello', 'big.bin'), randomBytes(size));
    await git(dir, 'add', '--all');
    await git(dir, 'commit', '--quiet', '-m', 'Too big for the disk');
    const pushed = await git(dir, 'push', 'origin', 'main');
    const figures = await hello.stop();
    expect(pushed.exitCode).not.toBe(0);
    expect(pushed.all).toContain('functions/hello/big.bin: could not be written: no space is left on the disk that holds the state folder (ENOSPC)');
    expect(pushed.all).toContain('the functions being served are unchanged');
    expect(await (await fetch(`${gateway!.url}/fn/hello`)).text()).toBe('Hello, world! This is fnix.\n');
    expect(figures.failures).toBe(0);
    // Git dropped its quarantine, fnix its staging copy: the space is back.
    expect(await pushLeftovers()).toEqual([]);
    expect(await freeBytes()).toBeGreaterThan(free - 1024 * 1024);
    // And the next push, of a size that fits, goes live.
    await git(dir, 'reset', '--quiet', '--hard', 'HEAD~1');
    await writeFile(join(dir, 'functions', 'hello', 'hello.sh'), '#!/usr/bin/env sh\necho "fits"\n', { mode: 0o755 });
    await git(dir, 'commit', '--quiet', '-am', 'Fits');
    const next = await git(dir, 'push', 'origin', 'main');
    expect(next.exitCode, next.all).toBe(0);
    expect(await (await fetch(`${gateway!.url}/fn/hello`)).text()).toBe('fits\n');
    await report('a push larger than the disk left for it', {
      tmpfsMb: TMPFS_MB,
      fileMb: Math.round(size / 2 ** 20),
      push: 'refused, naming the file and ENOSPC',
      leftovers: 0,
      nextPush: 'live',
      hello: figures,
    });
  });

  it('refuses a file name of 300 bytes (valid for git, too long for the disk), naming it', async () => {
    const dir = await clone();
    const blob = (await execa('git', ['hash-object', '-w', '--stdin'], { cwd: dir, env: GIT_ENV, input: 'long\n' })).stdout.trim();
    const longName = 'x'.repeat(300);
    await execa('git', ['update-index', '--add', '--cacheinfo', `100644,${blob},functions/hello/${longName}`], { cwd: dir, env: GIT_ENV });
    await git(dir, 'commit', '--quiet', '-m', 'A name too long');
    const pushed = await git(dir, 'push', 'origin', 'main');
    expect(pushed.exitCode).not.toBe(0);
    expect(pushed.all).toContain('has a name of 300 bytes; file systems take at most 255, so rename it');
    expect(pushed.all).toContain('functions/hello/xxxxxxxxxx');
    expect(await (await fetch(`${gateway!.url}/fn/hello`)).text()).toBe('fits\n');
    expect(await pushLeftovers()).toEqual([]);
    await report('a file name of 300 bytes in a push', { push: 'refused, naming the file and the 255-byte limit', leftovers: 0 });
  });

  it('starts on a disk that a dead push filled: what it left is removed before anything needs the space', async () => {
    await gateway!.close();
    gateway = undefined;
    // What a push killed mid-way leaves: git's quarantine holding its pack, fnix's staging copy, and
    // (killed while git moved main) main's lock file, which would refuse every push after it.
    await writeFile(join(stateDir, 'git', 'functions.git', 'refs', 'heads', 'main.lock'), `${'0'.repeat(40)}\n`);
    const quarantine = join(objectsDir(), 'tmp_objdir-incoming-dead01', 'pack');
    await mkdir(quarantine, { recursive: true });
    await writeFile(join(quarantine, 'tmp_pack_dead01'), randomBytes(Math.floor((await freeBytes()) * 0.75)));
    await mkdir(join(stateDir, 'staging', 'd-20261201-deadpush-x'), { recursive: true });
    // The rest of the disk, to the last byte.
    const filler = join(stateDir, 'staging', 'd-20261201-deadpush-x', 'big.bin');
    await writeFile(filler, randomBytes(await freeBytes())).catch(() => {});
    await execa('sh', ['-c', `cat /dev/zero >> '${filler}'`], { reject: false });
    expect(await freeBytes()).toBe(0);
    const began = performance.now();
    gateway = await startTestGateway({ stateDir, functionsDir: EXAMPLES_DIR });
    const startMs = performance.now() - began;
    expect(await (await fetch(`${gateway.url}/fn/hello`)).text()).toBe('fits\n');
    expect(await pushLeftovers()).toEqual([]);
    expect(gateway.logs.some((line) => line.includes('removed what an interrupted push or build left'))).toBe(true);
    // And pushes go live again: main's lock went with the rest.
    const dir = await clone();
    await writeFile(join(dir, 'functions', 'hello', 'hello.sh'), '#!/usr/bin/env sh\necho "after the dead push"\n', { mode: 0o755 });
    await git(dir, 'commit', '--quiet', '-am', 'After the dead push');
    const pushed = await git(dir, 'push', 'origin', 'main');
    expect(pushed.exitCode, pushed.all).toBe(0);
    expect(await (await fetch(`${gateway.url}/fn/hello`)).text()).toBe('after the dead push\n');
    await report('start on a disk a dead push filled', {
      free: '0 bytes at start',
      leftovers: 'removed first (quarantine, staging, main.lock)',
      serving: true,
      nextPush: 'live',
      startMs: Math.round(startMs),
    });
  });
});
