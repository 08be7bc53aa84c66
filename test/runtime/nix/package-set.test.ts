/**
 * @module
 * choosePackageSet and checkPackageSet against real Nix.
 */
import { cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FnixError, isFnixError } from '../../../runtime/errors.ts';
import { rejectionOf } from '../../helpers/errors.ts';
import {
  OFFLINE_SET_DIR,
  STARTER_SET_DIR,
  checkPackageSet,
  choosePackageSet,
  nixPathExpression,
  nixString,
  offlinePackageSet,
} from '../../../runtime/nix/package-set.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures', import.meta.url));

describe('choosePackageSet', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'fnix-pkgset-'));
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('defaults to <nixpkgs> when the search path has it, else the offline set (the offline set here)', async () => {
    const found = await execa('nix-instantiate', ['--find-file', 'nixpkgs'], { reject: false });
    const set = await choosePackageSet(undefined);
    expect(set.kind).toBe(found.exitCode === 0 ? 'nixpkgs' : 'offline');
    if (set.kind === 'offline') {
      expect(set.expression).toBe(OFFLINE_SET_DIR);
      expect(set.description).toBe('offline set (runtime/nix/offline, from Debian)');
      await checkPackageSet(set);
    }
    expect((await choosePackageSet('  ')).kind).toBe(set.kind);
  }, 60_000);

  it('rejects a path that does not exist with PACKAGE_SET_INVALID naming it', async () => {
    const error = await rejectionOf(choosePackageSet('/nonexistent/fnix-packages'), FnixError);
    expect(isFnixError(error, 'PACKAGE_SET_INVALID')).toBe(true);
    expect((error as Error).message).toContain('/nonexistent/fnix-packages');
    expect((error as Error).message).toContain('FNIX_PACKAGES');
  });

  it('resolves relative paths against the working directory', async () => {
    const relative = path.relative(process.cwd(), path.join(FIXTURES, 'extra-set'));
    const set = await choosePackageSet(relative);
    expect(set).toEqual({ kind: 'configured', expression: path.join(FIXTURES, 'extra-set'), description: path.join(FIXTURES, 'extra-set') });
    await checkPackageSet(set);
  }, 60_000);

  it('uses <name> as-is and rejects malformed search paths', async () => {
    expect(await choosePackageSet('<nixpkgs>')).toEqual({ kind: 'configured', expression: '<nixpkgs>', description: '<nixpkgs>' });
    const error = await rejectionOf(choosePackageSet('<nixpkgs> // { x = 1; }'), FnixError);
    expect(isFnixError(error, 'PACKAGE_SET_INVALID')).toBe(true);
  });

  it('quotes paths that are not Nix path literals, and Nix reads them back', async () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a Nix interpolation in a path, on purpose
    const odd = path.join(tmp, 'a dir with "quotes", ${dollar} and spaces');
    await cp(STARTER_SET_DIR, odd, { recursive: true });
    const set = await choosePackageSet(odd);
    expect(set.expression).toBe(`(/. + ${nixString(odd)})`);
    await checkPackageSet(set);
    const { stdout } = await execa('nix-instantiate', ['--eval', '--json', '-E', `toString ${set.expression}`]);
    expect(JSON.parse(stdout)).toBe(odd);
  }, 60_000);

  it('writes plain absolute paths as path literals', () => {
    expect(nixPathExpression('/srv/pkgs/default.nix')).toBe('/srv/pkgs/default.nix');
    expect(nixPathExpression('/srv/my pkgs')).toBe('(/. + "/srv/my pkgs")');
    expect(offlinePackageSet().kind).toBe('offline');
  });
});

describe('checkPackageSet', () => {
  it('rejects a set that is not an attribute set', async () => {
    const set = await choosePackageSet(path.join(FIXTURES, 'not-a-set'));
    const error = await rejectionOf(checkPackageSet(set), FnixError);
    expect(isFnixError(error, 'PACKAGE_SET_INVALID')).toBe(true);
    expect((error as Error).message).toContain('evaluates to a int');
  }, 60_000);

  it('rejects a set that does not parse, with the Nix error', async () => {
    const set = await choosePackageSet(path.join(FIXTURES, 'syntax-error'));
    const error = await rejectionOf(checkPackageSet(set), FnixError);
    expect(isFnixError(error, 'PACKAGE_SET_INVALID')).toBe(true);
    expect((error as Error).message).toMatch(/syntax error/);
    expect(String((error as { details: Record<string, unknown> }).details['log'])).toMatch(/syntax error/);
  }, 60_000);

  it('rejects <nixpkgs> when the search path lacks it', async () => {
    const found = await execa('nix-instantiate', ['--find-file', 'nixpkgs'], { reject: false });
    const check = checkPackageSet(await choosePackageSet('<nixpkgs>'));
    if (found.exitCode === 0) await check;
    else expect(isFnixError(await rejectionOf(check, FnixError), 'PACKAGE_SET_INVALID')).toBe(true);
  }, 60_000);
});
