/**
 * @module
 * What an invocation is given (runtime/secrets/delivery.ts): the declared secrets only, as files and,
 * where asked, as variables; SECRET_MISSING naming the secret and the fix; SECRET_INVALID for a
 * variable that cannot hold its value; and which functions declare a secret. Also the rotation
 * (rotation.ts): a change restarts the served serve functions that declare it, and no others.
 */
import { describe, expect, it, vi } from 'vitest';
import type { FnixError } from '../../../runtime/errors.ts';
import { parseManifest } from '../../../runtime/functions/manifest.ts';
import type { FunctionVersion } from '../../../runtime/functions/version.ts';
import { deliverSecrets, functionsDeclaring } from '../../../runtime/secrets/delivery.ts';
import { SecretRotation } from '../../../runtime/secrets/rotation.ts';
import type { SecretChange, SecretValues } from '../../../runtime/secrets/store.ts';
import { missingSecrets } from '../../../deployments/check.ts';

/** A function version with `manifest` (validated, defaults filled in); only what delivery reads is real. */
function version(name: string, manifest: Record<string, unknown>): FunctionVersion {
  return { name, key: `${name}@1`, version: '1', manifest: parseManifest({ command: ['x'], ...manifest }, `${name}/function.json`) } as FunctionVersion;
}

const values = (entries: Record<string, string | Buffer>): SecretValues => ({
  value: (name) => (name in entries ? Buffer.from(entries[name]!) : undefined),
});

function errorOf(run: () => unknown): FnixError {
  try {
    run();
  } catch (error) {
    return error as FnixError;
  }
  throw new Error('it did not throw');
}

describe('deliverSecrets', () => {
  it('gives each declared secret as a file, and as a variable where the manifest asks', () => {
    const fn = version('pay', { secrets: ['A_KEY', { name: 'B_KEY', env: true }, { name: 'C_KEY', env: 'C_VAR' }] });
    const delivery = deliverSecrets(fn, values({ A_KEY: 'a', B_KEY: 'b', C_KEY: 'c', UNDECLARED: 'u' }));
    expect(delivery.files.map((f) => [f.name, f.data.toString()])).toEqual([
      ['A_KEY', 'a'],
      ['B_KEY', 'b'],
      ['C_KEY', 'c'],
    ]);
    expect(delivery.env).toEqual({ B_KEY: 'b', C_VAR: 'c' });
  });

  it('gives nothing to a function declaring nothing, whatever is set', () => {
    expect(deliverSecrets(version('plain', {}), values({ A_KEY: 'a' }))).toEqual({ files: [], env: {} });
    expect(deliverSecrets(version('plain', {}), undefined)).toEqual({ files: [], env: {} });
  });

  it('throws SECRET_MISSING naming the function, the secret and the fix', () => {
    const error = errorOf(() => deliverSecrets(version('pay', { secrets: ['A_KEY', 'GONE'] }), values({ A_KEY: 'a' })));
    expect(error.code).toBe('SECRET_MISSING');
    expect(error.details).toEqual({ function: 'pay', secret: 'GONE' });
    expect(error.message).toContain('fnix secret set GONE');
  });

  it('throws SECRET_INVALID for a variable whose value holds NUL, without quoting it', () => {
    const error = errorOf(() => deliverSecrets(version('pay', { secrets: [{ name: 'BIN', env: true }] }), values({ BIN: Buffer.from('ab\0cd-value') })));
    expect(error.code).toBe('SECRET_INVALID');
    expect(error.message).not.toContain('cd-value');
    // As a file alone, the same value is fine.
    expect(deliverSecrets(version('pay', { secrets: ['BIN'] }), values({ BIN: Buffer.from('ab\0cd') })).files[0]!.data.length).toBe(5);
  });

  it('throws SECRET_INVALID when the values are too large for one SPAWN frame', () => {
    const big = Buffer.alloc(60 * 1024, 0x61);
    const names = Array.from({ length: 14 }, (_, i) => `K${i}`);
    const fn = version('many', { secrets: names });
    expect(errorOf(() => deliverSecrets(fn, values(Object.fromEntries(names.map((n) => [n, big]))))).code).toBe('SECRET_INVALID');
  });
});

describe('functionsDeclaring and missingSecrets', () => {
  const versions = [version('a', { secrets: ['S1'] }), version('b', { secrets: [{ name: 'S1', env: true }, 'S2'] }), version('c', {})];

  it('names the functions declaring a secret', () => {
    expect(functionsDeclaring(versions, 'S1')).toEqual(['a', 'b']);
    expect(functionsDeclaring(versions, 'S2')).toEqual(['b']);
    expect(functionsDeclaring(versions, 'NONE')).toEqual([]);
  });

  it('finds each function declaring a secret that is not set, with SECRET_MISSING naming it and the fix', () => {
    const missing = missingSecrets({ secretNames: () => new Set(['S1']) }, versions);
    expect([...missing.keys()]).toEqual(['b']);
    const error = missing.get('b')!;
    expect(error.code).toBe('SECRET_MISSING');
    expect(error.message).toContain('functions/b: declares the secret S2, which is not set');
    expect(error.message).toContain('fnix secret set S2');
    expect(missingSecrets({ secretNames: () => new Set(['S1', 'S2']) }, versions).size).toBe(0);
    expect(missingSecrets({ secretNames: () => new Set() }, versions).get('b')!.details['secrets']).toEqual(['S1', 'S2']);
  });
});

describe('SecretRotation', () => {
  function setup() {
    let listener: (change: SecretChange) => void = () => {};
    const store = {
      onChange: (l: typeof listener) => {
        listener = l;
        return () => {};
      },
    };
    const served = [
      version('web', { secrets: ['S1'], serve: { port: 8080 } }),
      version('other-web', { secrets: ['S2'], serve: { port: 8080 } }),
      version('job', { secrets: ['S1'] }),
    ];
    const restart = vi.fn(async (names: Iterable<string>) => [...names]);
    const log = { info: vi.fn(), warn: vi.fn(), error: vi.fn() } as never;
    const rotation = new SecretRotation({ store, registry: { versions: () => served }, instances: { restart }, log });
    return { rotation, restart, change: (change: SecretChange) => listener(change) };
  }

  it('restarts the served serve functions declaring a secret that was set, and only those', async () => {
    const { rotation, restart, change } = setup();
    change({ name: 'S1', kind: 'set' });
    expect(restart).toHaveBeenCalledTimes(1);
    expect([...restart.mock.calls[0]![0]]).toEqual(['web']);
    expect(await rotation.latest('S1')?.done).toEqual(['web']);
  });

  it('restarts nothing on a removal, or for a secret no serve function declares', () => {
    const { rotation, restart, change } = setup();
    change({ name: 'S1', kind: 'removed' });
    change({ name: 'UNUSED', kind: 'set' });
    expect(restart).not.toHaveBeenCalled();
    expect(rotation.latest('UNUSED')).toBeUndefined();
  });
});
