/**
 * @module
 * The state folder's secret store (runtime/secrets/file-store.ts) and its key (key.ts): list, set,
 * remove and read; what is on disk (modes, no value in clear, atomic rewrites); the change callback;
 * a wrong key, a damaged file and a bad key file each refused at open with SECRETS_KEY_INVALID.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FnixError } from '../../../runtime/errors.ts';
import { FileSecretStore, SECRETS_FILE } from '../../../runtime/secrets/file-store.ts';
import { decodeSecretsKey, loadSecretsKey, SECRETS_KEY_FILE } from '../../../runtime/secrets/key.ts';
import { createFileOnce, writeFileAtomic } from '../../../runtime/secrets/atomic-file.ts';
import type { SecretChange } from '../../../runtime/secrets/store.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fnix-secrets-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The code of what `promise` rejects with. */
async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  return error instanceof FnixError ? error.code : String(error);
}

describe('FileSecretStore', () => {
  it('lists, sets, reads, replaces and removes', async () => {
    const store = await FileSecretStore.open({ stateDir: dir });
    expect(store.list()).toEqual([]);
    const set = await store.set('B_KEY', Buffer.from('one'));
    await store.set('A_KEY', Buffer.from('two'));
    expect(store.list().map((s) => s.name)).toEqual(['A_KEY', 'B_KEY']);
    expect(new Date(set.setAt).getTime()).toBeGreaterThan(Date.now() - 60_000);
    expect(store.value('B_KEY')?.toString()).toBe('one');
    expect(store.has('B_KEY')).toBe(true);
    await store.set('B_KEY', Buffer.from('three'));
    expect(store.value('B_KEY')?.toString()).toBe('three');
    expect(await store.remove('B_KEY')).toBe(true);
    expect(await store.remove('B_KEY')).toBe(false);
    expect(store.value('B_KEY')).toBeUndefined();
    expect(store.list().map((s) => s.name)).toEqual(['A_KEY']);
  });

  it('keeps the secrets across a reopen, with the same key file', async () => {
    const first = await FileSecretStore.open({ stateDir: dir });
    await first.set('TOKEN', Buffer.from([0, 1, 2, 255]));
    expect(first.keySource).toBe('generated');
    const second = await FileSecretStore.open({ stateDir: dir });
    expect(second.keySource).toBe('state');
    expect([...(second.value('TOKEN') ?? [])]).toEqual([0, 1, 2, 255]);
  });

  it('writes the key and the ciphertexts with mode 0600, and no value in clear', async () => {
    const store = await FileSecretStore.open({ stateDir: dir });
    const value = `recognisable-${randomBytes(8).toString('hex')}`;
    await store.set('API_KEY', Buffer.from(value));
    expect((await stat(join(dir, SECRETS_KEY_FILE))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, SECRETS_FILE))).mode & 0o777).toBe(0o600);
    const kept = JSON.parse(await readFile(join(dir, SECRETS_FILE), 'utf8'));
    expect(Object.keys(kept.API_KEY).sort()).toEqual(['ciphertext', 'nonce', 'setAt']);
    for (const file of await readdir(dir)) {
      const bytes = await readFile(join(dir, file));
      expect(bytes.includes(value)).toBe(false);
      expect(bytes.includes(Buffer.from(value).toString('base64'))).toBe(false);
    }
    // no temporary file is left behind
    expect((await readdir(dir)).sort()).toEqual([SECRETS_FILE, SECRETS_KEY_FILE]);
  });

  it('tells the change listeners after each change is durable, and stops when unsubscribed', async () => {
    const store = await FileSecretStore.open({ stateDir: dir });
    const changes: Array<SecretChange & { onDisk: boolean }> = [];
    const stop = store.onChange((change) => {
      changes.push({ ...change, onDisk: JSON.stringify(store.list()).includes(change.name) === (change.kind === 'set') });
    });
    await store.set('A', Buffer.from('1'));
    await store.remove('A');
    stop();
    await store.set('B', Buffer.from('2'));
    expect(changes).toEqual([
      { name: 'A', kind: 'set', onDisk: true },
      { name: 'A', kind: 'removed', onDisk: true },
    ]);
  });

  it('ends as the last of concurrent changes left it', async () => {
    const store = await FileSecretStore.open({ stateDir: dir });
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.set(`K${i}`, Buffer.from(String(i)))));
    const reopened = await FileSecretStore.open({ stateDir: dir });
    expect(reopened.list()).toHaveLength(20);
    expect(reopened.value('K7')?.toString()).toBe('7');
  });

  it('refuses to open with another key: SECRETS_KEY_INVALID naming the fix', async () => {
    const store = await FileSecretStore.open({ stateDir: dir });
    await store.set('A', Buffer.from('1'));
    const error = await FileSecretStore.open({ stateDir: dir, key: randomBytes(32) }).catch((e: unknown) => e as FnixError);
    expect(error).toBeInstanceOf(FnixError);
    expect((error as FnixError).code).toBe('SECRETS_KEY_INVALID');
    expect((error as FnixError).message).toMatch(/FNIX_SECRETS_KEY/);
    expect((error as FnixError).message).toMatch(/secrets\.key/);
  });

  it('opens with FNIX_SECRETS_KEY and makes no key file then', async () => {
    const key = randomBytes(32);
    const store = await FileSecretStore.open({ stateDir: dir, key });
    await store.set('A', Buffer.from('1'));
    expect(store.keySource).toBe('FNIX_SECRETS_KEY');
    expect(await readdir(dir)).toEqual([SECRETS_FILE]);
    expect((await FileSecretStore.open({ stateDir: dir, key })).value('A')?.toString()).toBe('1');
  });

  it('refuses a value moved to another name in the file (tampering)', async () => {
    const store = await FileSecretStore.open({ stateDir: dir });
    await store.set('A', Buffer.from('1'));
    await store.set('B', Buffer.from('2'));
    const file = join(dir, SECRETS_FILE);
    const kept = JSON.parse(await readFile(file, 'utf8'));
    kept.B = { ...kept.A, setAt: kept.B.setAt };
    await writeFile(file, JSON.stringify(kept));
    const error = (await FileSecretStore.open({ stateDir: dir }).catch((e: unknown) => e)) as FnixError;
    expect(error.code).toBe('SECRETS_KEY_INVALID');
    expect(error.details['secrets']).toEqual(['B']);
  });

  it('refuses a damaged secrets.json and a key file without a key', async () => {
    await writeFile(join(dir, SECRETS_FILE), '{not json');
    expect(await codeOf(FileSecretStore.open({ stateDir: dir }))).toBe('SECRETS_KEY_INVALID');
    await rm(join(dir, SECRETS_FILE));
    await writeFile(join(dir, SECRETS_KEY_FILE), 'c2hvcnQ=\n');
    expect(await codeOf(FileSecretStore.open({ stateDir: dir }))).toBe('SECRETS_KEY_INVALID');
  });
});

describe('loadSecretsKey', () => {
  it('makes one key at first start, and the same one for every later or concurrent start', async () => {
    const keys = await Promise.all(Array.from({ length: 8 }, () => loadSecretsKey(dir)));
    expect(keys.filter((k) => k.source === 'generated')).toHaveLength(1);
    for (const k of keys) expect(k.key.equals(keys[0]!.key)).toBe(true);
    expect(decodeSecretsKey(await readFile(join(dir, SECRETS_KEY_FILE), 'utf8'))?.equals(keys[0]!.key)).toBe(true);
  });
});

describe('decodeSecretsKey', () => {
  it('takes 32 bytes of base64 or base64url, and nothing else', () => {
    const key = randomBytes(32);
    expect(decodeSecretsKey(key.toString('base64'))?.equals(key)).toBe(true);
    expect(decodeSecretsKey(`${key.toString('base64url')}\n`)?.equals(key)).toBe(true);
    expect(decodeSecretsKey(randomBytes(31).toString('base64'))).toBeUndefined();
    expect(decodeSecretsKey('not a key at all!')).toBeUndefined();
    expect(decodeSecretsKey('')).toBeUndefined();
  });
});

describe('writeFileAtomic and createFileOnce', () => {
  it('replace a file whole, with the mode asked for whatever the umask', async () => {
    const file = join(dir, 'f');
    await writeFileAtomic(file, 'old', 0o600);
    await writeFileAtomic(file, 'new', 0o640);
    expect(await readFile(file, 'utf8')).toBe('new');
    expect((await stat(file)).mode & 0o777).toBe(0o640);
    expect(await readdir(dir)).toEqual(['f']);
  });

  it('leave the old file when the write fails', async () => {
    const file = join(dir, 'f');
    await writeFileAtomic(file, 'old', 0o600);
    await expect(writeFileAtomic(join(dir, 'missing', 'f'), 'x', 0o600)).rejects.toThrow();
    expect(await readFile(file, 'utf8')).toBe('old');
  });

  it('create once: a second create leaves the first file', async () => {
    const file = join(dir, 'once');
    expect(await createFileOnce(file, 'first', 0o600)).toBe(true);
    expect(await createFileOnce(file, 'second', 0o600)).toBe(false);
    expect(await readFile(file, 'utf8')).toBe('first');
    expect(await readdir(dir)).toEqual(['once']);
  });
});
