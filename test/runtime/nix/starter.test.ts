/**
 * @module
 * Builds the offline set (runtime/nix/starter) with real Nix and runs its binaries on the host.
 */
import { lstat, mkdtemp, readdir, readlink, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const STARTER = fileURLToPath(new URL('../../../runtime/nix/starter', import.meta.url));
const NO_SUBSTITUTES = ['--option', 'substituters', ''];

describe('starter package set', () => {
  let rootsDir: string;
  const outputs: Record<string, string> = {};

  beforeAll(async () => {
    rootsDir = await mkdtemp(path.join(os.tmpdir(), 'fnix-starter-'));
    // Out-links (not --no-out-link) so a garbage collection in another test file cannot delete the outputs.
    for (const name of ['busybox', 'bash', 'gojq']) {
      const { stdout } = await execa('nix-build', [...NO_SUBSTITUTES, STARTER, '-A', name, '--out-link', path.join(rootsDir, name)]);
      outputs[name] = stdout.trim();
    }
  }, 120_000);

  afterAll(async () => {
    await rm(rootsDir, { recursive: true, force: true });
  });

  it('builds busybox, bash and gojq to store paths with a bin/ folder', () => {
    expect(outputs['busybox']).toMatch(/^\/nix\/store\/[0-9a-z]{32}-busybox-static$/);
    expect(outputs['bash']).toMatch(/^\/nix\/store\/[0-9a-z]{32}-bash-static$/);
    expect(outputs['gojq']).toMatch(/^\/nix\/store\/[0-9a-z]{32}-gojq$/);
  });

  it('gives busybox a bin/ symlink for every applet', async () => {
    const { stdout } = await execa('/bin/busybox', ['--list']);
    const applets = stdout.split('\n').filter(Boolean);
    const entries = await readdir(`${outputs['busybox']}/bin`);
    expect(new Set(entries)).toEqual(new Set([...applets, 'busybox']));
    expect(await readlink(`${outputs['busybox']}/bin/ls`)).toBe('busybox');
    const { stdout: echoed } = await execa(`${outputs['busybox']}/bin/echo`, ['hello from busybox']);
    expect(echoed).toBe('hello from busybox');
    const { stdout: summed } = await execa(`${outputs['busybox']}/bin/expr`, ['2', '+', '3']);
    expect(summed).toBe('5');
  });

  it('ships working bash and sh', async () => {
    const { stdout } = await execa(`${outputs['bash']}/bin/bash`, ['-c', 'echo "$BASH_VERSION"']);
    expect(stdout).toMatch(/^5\./);
    const { stdout: sh } = await execa(`${outputs['bash']}/bin/sh`, ['-c', 'echo $((6 * 7))']);
    expect(sh).toBe('42');
  });

  it('ships a working gojq', async () => {
    const { stdout } = await execa(`${outputs['gojq']}/bin/gojq`, ['--version']);
    expect(stdout).toMatch(/^gojq 0\./);
    const { stdout: result } = await execa(`${outputs['gojq']}/bin/gojq`, ['-c', '.a + 1'], { input: '{"a":41}' });
    expect(result).toBe('42');
  });

  it('produces read-only, executable files', async () => {
    for (const file of [`${outputs['busybox']}/bin/busybox`, `${outputs['bash']}/bin/bash`, `${outputs['gojq']}/bin/gojq`]) {
      const { mode } = await lstat(file);
      expect(mode & 0o777).toBe(0o555);
    }
  });

  it('imports with {} and with overridden host paths, and has descriptions', async () => {
    const expr =
      `let s = import ${STARTER} {}; o = import ${STARTER} { gojqBin = /bin/busybox; }; in ` +
      '[ s.gojq.meta.description (s.gojq.drvPath == o.gojq.drvPath) s.bash.drvPath ]';
    const { stdout } = await execa('nix-instantiate', ['--eval', '--strict', '--json', '-E', expr]);
    const [description, sameDrv, bashDrv] = JSON.parse(stdout) as [string, boolean, string];
    expect(description).toMatch(/gojq/);
    expect(sameDrv).toBe(false);
    expect(bashDrv).toMatch(/-bash-static\.drv$/);
  });
});
