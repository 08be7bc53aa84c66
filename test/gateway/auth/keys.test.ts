/**
 * @module
 * The invoke key store (gateway/auth/keys/file-store.ts) and the key's text (key-text.ts), on a real
 * state folder: the text's shape, that only a hash reaches the disk (the file is grepped for the key),
 * the constant-time compare, scopes, revocation, last uses flushed rather than written per request,
 * and that a restart keeps the keys.
 */
import * as crypto from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FileKeyStore, KEYS_FILE } from '../../../gateway/auth/keys/file-store.ts';
import { hashSecret, isKeyAuthorization, makeKeyText, parseKeyText, presentedKey, withoutKeyProtocols } from '../../../gateway/auth/keys/key-text.ts';
import { FnixError } from '../../../runtime/errors.ts';

vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  // A spy that still compares: the test counts its calls, the store gets the real answer.
  return { ...actual, timingSafeEqual: vi.fn(actual.timingSafeEqual) };
});

let stateDir: string;
const stores: FileKeyStore[] = [];
async function openStore(options: { flushMs?: number; now?: () => Date } = {}): Promise<FileKeyStore> {
  const store = await FileKeyStore.open({ stateDir, ...options });
  stores.push(store);
  return store;
}

beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'fnix-keys-'));
});
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  await rm(stateDir, { recursive: true, force: true });
});

describe("a key's text", () => {
  it('is fnixk_<12-character id>_<32 random bytes, base64url>, and parses back', () => {
    const made = makeKeyText();
    expect(made.text).toMatch(/^fnixk_[0-9A-Za-z]{12}_[A-Za-z0-9_-]{43}$/);
    const parsed = parseKeyText(made.text)!;
    expect(parsed.id).toBe(made.id);
    expect(Buffer.from(parsed.secret, 'base64url')).toHaveLength(32);
    expect(made.hash).toBe(`sha256:${crypto.createHash('sha256').update(parsed.secret).digest('base64url')}`);
    expect(made.hash).toBe(hashSecret(parsed.secret));
    expect(makeKeyText().text).not.toBe(made.text);
    for (const bad of ['', 'fnixk_', `fnixk_${made.id}`, `${made.text}x`, made.text.replace('fnixk_', 'fnix_'), ` ${made.text}`]) {
      expect(parseKeyText(bad), bad).toBeUndefined();
    }
  });

  it('is found in X-Fnix-Key, then Authorization: Bearer, then (WebSocket only) a fnix.key.<key> subprotocol', () => {
    const key = makeKeyText().text;
    expect(presentedKey({ 'x-fnix-key': key, authorization: 'Bearer other' }, { webSocket: false })).toEqual({ text: key, via: 'x-fnix-key' });
    expect(presentedKey({ authorization: `bearer   ${key} ` }, { webSocket: false })).toEqual({ text: key, via: 'authorization' });
    expect(presentedKey({ authorization: 'Basic dTpw' }, { webSocket: false })).toBeUndefined();
    const offered = { 'sec-websocket-protocol': `fnix.session, fnix.key.${key}` };
    expect(presentedKey(offered, { webSocket: false })).toBeUndefined();
    expect(presentedKey(offered, { webSocket: true })).toEqual({ text: key, via: 'sec-websocket-protocol' });
    expect(presentedKey({}, { webSocket: true })).toBeUndefined();
  });

  it('is recognised where it must be taken out of what a function sees', () => {
    const key = makeKeyText().text;
    expect(isKeyAuthorization(`Bearer ${key}`)).toBe(true);
    expect(isKeyAuthorization('Bearer an-app-token')).toBe(false);
    expect(isKeyAuthorization('Basic dTpw')).toBe(false);
    expect(withoutKeyProtocols(`chat, fnix.key.${key}`)).toBe('chat');
    expect(withoutKeyProtocols(`fnix.key.${key}`)).toBeUndefined();
    expect(withoutKeyProtocols('chat, superchat')).toBe('chat, superchat');
  });
});

describe('FileKeyStore', () => {
  it('shows the key once and keeps only the hash of its secret, in a 0600 file', async () => {
    const store = await openStore();
    const created = await store.create({ name: 'ci', function: 'hello' });
    expect(created).toEqual({
      id: expect.stringMatching(/^[0-9A-Za-z]{12}$/),
      key: expect.stringMatching(/^fnixk_/),
      name: 'ci',
      function: 'hello',
      createdAt: expect.any(String),
      lastUsedAt: null,
    });
    const file = join(stateDir, KEYS_FILE);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const text = await readFile(file, 'utf8');
    const secret = parseKeyText(created.key)!.secret;
    expect(text).not.toContain(created.key);
    expect(text).not.toContain(secret);
    expect(text).toContain(hashSecret(secret));
    expect(JSON.parse(text)).toEqual({
      version: 1,
      keys: [{ id: created.id, name: 'ci', function: 'hello', createdAt: created.createdAt, lastUsedAt: null, hash: hashSecret(secret) }],
    });
    // The listing has no text and no hash.
    expect(store.list()).toEqual([{ id: created.id, name: 'ci', function: 'hello', createdAt: created.createdAt, lastUsedAt: null }]);
    // No temporary file is left beside it.
    expect(await readdir(stateDir)).toEqual([KEYS_FILE]);
  });

  it('verifies by comparing digests in constant time, for right, wrong and unknown keys alike', async () => {
    const store = await openStore();
    const { key } = await store.create({});
    const compare = vi.mocked(crypto.timingSafeEqual);
    compare.mockClear();
    expect(store.verify(key, 'anything').ok).toBe(true);
    const { id } = parseKeyText(key)!;
    const wrongSecret = `fnixk_${id}_${'A'.repeat(43)}`;
    expect(store.verify(wrongSecret, 'anything')).toEqual({ ok: false, why: 'wrong' });
    expect(store.verify(makeKeyText().text, 'anything')).toEqual({ ok: false, why: 'wrong' });
    expect(store.verify('not a key at all', 'anything')).toEqual({ ok: false, why: 'wrong' });
    expect(compare).toHaveBeenCalledTimes(4);
    for (const [a, b] of compare.mock.calls) {
      expect((a as Buffer).length).toBe(32);
      expect((b as Buffer).length).toBe(32);
    }
  });

  it('lets a scoped key open its own function only, and an unscoped key every function', async () => {
    const store = await openStore();
    const scoped = await store.create({ function: 'hello' });
    const everything = await store.create({ name: 'all' });
    expect(everything.function).toBeNull();
    expect(store.verify(scoped.key, 'hello').ok).toBe(true);
    expect(store.verify(scoped.key, 'echo')).toEqual({ ok: false, why: 'scope', keyId: scoped.id });
    expect(store.verify(everything.key, 'hello').ok).toBe(true);
    expect(store.verify(everything.key, 'echo').ok).toBe(true);
  });

  it('refuses a revoked key at once, and says KEY_NOT_FOUND for an id it does not have', async () => {
    const store = await openStore();
    const first = await store.create({ name: 'a' });
    const second = await store.create({ name: 'b' });
    const changes: string[] = [];
    store.onChange((change) => changes.push(`${change.type} ${change.key.id}`));
    const revoking = store.revoke(first.id);
    // Refused before the write has finished.
    expect(store.verify(first.key, 'hello').ok).toBe(false);
    await revoking;
    expect(store.verify(second.key, 'hello').ok).toBe(true);
    expect(store.list().map((k) => k.id)).toEqual([second.id]);
    expect(changes).toEqual([`revoked ${first.id}`]);
    const error = await store.revoke(first.id).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FnixError);
    expect((error as FnixError).code).toBe('KEY_NOT_FOUND');
  });

  it('keeps keys and revocations across a restart', async () => {
    const store = await openStore();
    const kept = await store.create({ name: 'kept', function: 'echo' });
    const gone = await store.create({ name: 'gone' });
    await store.revoke(gone.id);
    await store.close();
    const again = await openStore();
    expect(again.list()).toEqual([{ id: kept.id, name: 'kept', function: 'echo', createdAt: kept.createdAt, lastUsedAt: null }]);
    expect(again.verify(kept.key, 'echo').ok).toBe(true);
    expect(again.verify(gone.key, 'echo').ok).toBe(false);
  });

  it('notes uses in memory and writes them every flushMs and at close, not once per request', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      let now = new Date('2026-12-01T10:00:00.000Z');
      const store = await openStore({ flushMs: 60_000, now: () => now });
      const { id, key } = await store.create({});
      const onDisk = async () => JSON.parse(await readFile(join(stateDir, KEYS_FILE), 'utf8')).keys[0].lastUsedAt;
      now = new Date('2026-12-01T10:00:05.000Z');
      for (let i = 0; i < 100; i++) expect(store.verify(key, 'hello').ok).toBe(true);
      expect(store.list()[0]!.lastUsedAt).toBe('2026-12-01T10:00:05.000Z');
      expect(await onDisk()).toBeNull();
      await vi.advanceTimersByTimeAsync(60_000);
      await vi.waitFor(async () => expect(await onDisk()).toBe('2026-12-01T10:00:05.000Z'));
      now = new Date('2026-12-01T10:00:09.000Z');
      store.verify(key, 'hello');
      await store.close();
      expect(await onDisk()).toBe('2026-12-01T10:00:09.000Z');
      expect(store.list()[0]!.id).toBe(id);
    } finally {
      vi.useRealTimers();
    }
  });

  it('checks what a key is made with', async () => {
    const store = await openStore();
    const codeOf = (request: Parameters<FileKeyStore['create']>[0]) =>
      store.create(request).then(
        () => 'created',
        (e: FnixError) => e.code,
      );
    expect(await codeOf({ function: 'Not_A_Name' })).toBe('FUNCTION_NAME_INVALID');
    expect(await codeOf({ function: 'not-deployed-yet' })).toBe('created');
    expect(await codeOf({ name: '' })).toBe('BAD_REQUEST');
    expect(await codeOf({ name: 'x'.repeat(101) })).toBe('BAD_REQUEST');
    expect(await codeOf({ name: 'a\nb' })).toBe('BAD_REQUEST');
    expect(await codeOf({ name: 'ci · deploys' })).toBe('created');
  });

  it('refuses to start on a keys file it cannot read, naming the file', async () => {
    await writeFile(join(stateDir, KEYS_FILE), '{"version":1,"keys":[{"id":"x"}]}');
    await expect(FileKeyStore.open({ stateDir })).rejects.toThrow(new RegExp(`${KEYS_FILE} is not an invoke keys file`));
    await writeFile(join(stateDir, KEYS_FILE), 'nonsense');
    await expect(FileKeyStore.open({ stateDir })).rejects.toThrow(/is not JSON/);
  });
});
