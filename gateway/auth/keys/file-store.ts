/**
 * @module
 * Invoke keys kept in `<stateDir>/keys.json` (mode 0600): each key's id, name, scope, times, and the
 * SHA-256 of its secret, never the secret. The file is read once at start and held in memory, which is
 * what requests are checked against; each create or revoke rewrites it whole, atomically (a temporary
 * file, fsync, rename, fsync of the folder), one write at a time. When a key was last used is noted in
 * memory and written with the next change, or every `flushMs`: never one disk write per request.
 */
import { timingSafeEqual } from 'node:crypto';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { FnixError } from '../../../runtime/errors.ts';
import { assertFunctionName } from '../../../runtime/functions/name.ts';
import { removeMatching } from '../../../runtime/secrets/atomic-file.ts';
import { makeKeyText, parseKeyText, secretDigest } from './key-text.ts';
import type { CreatedKey, KeyChange, KeyInfo, KeyRequest, KeyStore } from './store.ts';

/** The file's name in the state folder. */
export const KEYS_FILE = 'keys.json';
/** The most keys kept, which bounds the file (about 200 bytes a key). */
export const MAX_KEYS = 10_000;
/** The longest key name. */
export const MAX_KEY_NAME = 100;

/** Options of {@link FileKeyStore.open}. */
export interface FileKeyStoreOptions {
  /** The state folder; the keys are in its keys.json. */
  stateDir: string;
  /** How often uses noted in memory are written. @default 60000 */
  flushMs?: number;
  /** The clock (tests pass a fake one). @default () => new Date() */
  now?: () => Date;
}

const keptKeySchema = z.strictObject({
  id: z.string().regex(/^[0-9A-Za-z]{12}$/),
  name: z.string().max(MAX_KEY_NAME).nullable(),
  function: z.string().nullable(),
  createdAt: z.string(),
  lastUsedAt: z.string().nullable(),
  hash: z.string().regex(/^sha256:[A-Za-z0-9_-]{43}$/),
});
const fileSchema = z.strictObject({ version: z.literal(1), keys: z.array(keptKeySchema) });
type KeptKey = z.infer<typeof keptKeySchema>;

/** A digest no secret has, compared against when the id is unknown, so that both paths do the same work. */
const NO_DIGEST = Buffer.alloc(32);

/** The keys of one gateway, in a file of its state folder. */
export class FileKeyStore implements KeyStore {
  readonly #file: string;
  readonly #now: () => Date;
  readonly #keys = new Map<string, KeptKey & { digest: Buffer }>();
  readonly #listeners = new Set<(change: KeyChange) => void>();
  readonly #timer: NodeJS.Timeout;
  /** Writes in order: each waits for the one before. */
  #writing: Promise<void> = Promise.resolve();
  /** Uses noted since the last write. */
  #unwritten = false;
  #writes = 0;

  private constructor(file: string, kept: KeptKey[], options: FileKeyStoreOptions) {
    this.#file = file;
    this.#now = options.now ?? (() => new Date());
    for (const key of kept) this.#keys.set(key.id, { ...key, digest: Buffer.from(key.hash.slice('sha256:'.length), 'base64url') });
    const flushMs = options.flushMs ?? 60_000;
    if (!(flushMs > 0)) throw new TypeError(`flushMs must be positive, got ${flushMs}`);
    this.#timer = setInterval(() => {
      if (this.#unwritten) this.#write().catch(() => {}); // tried again at the next interval
    }, flushMs);
    this.#timer.unref();
  }

  /** Reads `<stateDir>/keys.json` (none yet is no keys). Throws when it is not a keys file. */
  static async open(options: FileKeyStoreOptions): Promise<FileKeyStore> {
    const file = join(options.stateDir, KEYS_FILE);
    // Temporary files a process killed mid-write left (`.keys.json.<pid>.<n>.tmp`); opened once the
    // state folder is this process's, so none is being written.
    await removeMatching(options.stateDir, new RegExp(`^\\.${KEYS_FILE.replaceAll('.', '\\.')}\\.\\d+\\.\\d+\\.tmp$`));
    const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    let kept: KeptKey[] = [];
    if (text !== undefined) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (error) {
        throw new Error(`${file} is not JSON (${(error as Error).message}): restore it from a backup, or remove it (every invoke key is then lost)`);
      }
      const result = fileSchema.safeParse(parsed);
      if (!result.success) {
        throw new Error(`${file} is not an invoke keys file (${result.error.issues[0]?.message ?? 'bad shape'}): restore it from a backup, or remove it`);
      }
      kept = result.data.keys;
    }
    return new FileKeyStore(file, kept, options);
  }

  async create(request: KeyRequest): Promise<CreatedKey> {
    const name = request.name ?? null;
    const fn = request.function ?? null;
    if (fn !== null) assertFunctionName(fn);
    if (name !== null && (name.length === 0 || name.length > MAX_KEY_NAME || /\p{Cc}/u.test(name))) {
      throw new FnixError('BAD_REQUEST', `a key's name is 1 to ${MAX_KEY_NAME} characters, with no control characters`);
    }
    if (this.#keys.size >= MAX_KEYS) throw new FnixError('BAD_REQUEST', `${MAX_KEYS} keys exist, the most fnix keeps: revoke some first`);
    const made = makeKeyText();
    const kept: KeptKey = { id: made.id, name, function: fn, createdAt: this.#now().toISOString(), lastUsedAt: null, hash: made.hash };
    this.#keys.set(kept.id, { ...kept, digest: secretDigest(parseKeyText(made.text)!.secret) });
    try {
      await this.#write();
    } catch (error) {
      // Not kept for good, so not given out.
      this.#keys.delete(kept.id);
      throw error;
    }
    const info = infoOf(kept);
    this.#emit({ type: 'created', key: info });
    return { ...info, key: made.text };
  }

  list(): KeyInfo[] {
    return [...this.#keys.values()].map(infoOf).sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  async revoke(id: string): Promise<KeyInfo> {
    const kept = this.#keys.get(id);
    if (!kept)
      throw new FnixError('KEY_NOT_FOUND', `no invoke key has the id ${JSON.stringify(id.slice(0, 40))}; GET /api/keys lists them`, {
        details: { id: id.slice(0, 40) },
      });
    // Out of memory first: from here on no request gets in with it, even if the write below fails.
    this.#keys.delete(id);
    await this.#write();
    const info = infoOf(kept);
    this.#emit({ type: 'revoked', key: info });
    return info;
  }

  verify(text: string, functionName: string): { ok: true; key: KeyInfo } | { ok: false; why: 'wrong' | 'scope'; keyId?: string } {
    const parsed = parseKeyText(text);
    const kept = parsed ? this.#keys.get(parsed.id) : undefined;
    const given = secretDigest(parsed?.secret ?? text);
    const matches = timingSafeEqual(given, kept?.digest ?? NO_DIGEST) && kept !== undefined;
    if (!matches || !kept) return { ok: false, why: 'wrong' };
    if (kept.function !== null && kept.function !== functionName) return { ok: false, why: 'scope', keyId: kept.id };
    kept.lastUsedAt = this.#now().toISOString();
    this.#unwritten = true;
    return { ok: true, key: infoOf(kept) };
  }

  onChange(listener: (change: KeyChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    if (this.#unwritten) await this.#write();
    await this.#writing;
  }

  #emit(change: KeyChange): void {
    for (const listener of this.#listeners) listener(change);
  }

  /** Writes the keys as they are when the write begins, after the writes before it. */
  #write(): Promise<void> {
    const next = this.#writing.then(() => this.#writeNow());
    // A failed write fails its caller; the next write starts afresh.
    this.#writing = next.catch(() => {});
    return next;
  }

  async #writeNow(): Promise<void> {
    this.#unwritten = false;
    const keys = [...this.#keys.values()].map(({ digest: _digest, ...kept }) => kept);
    const text = `${JSON.stringify({ version: 1, keys }, null, 1)}\n`;
    const temporary = join(dirname(this.#file), `.${basename(this.#file)}.${process.pid}.${++this.#writes}.tmp`);
    try {
      const handle = await open(temporary, 'wx', 0o600);
      try {
        await handle.writeFile(text);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temporary, this.#file);
    } catch (error) {
      this.#unwritten = true;
      await rm(temporary, { force: true });
      throw new Error(`could not write the invoke keys to ${this.#file}: ${(error as Error).message}`, { cause: error });
    }
    // The rename itself is durable once the folder is synced.
    const folder = await open(dirname(this.#file), 'r');
    try {
      await folder.sync();
    } finally {
      await folder.close();
    }
  }
}

function infoOf(kept: KeptKey): KeyInfo {
  return { id: kept.id, name: kept.name, function: kept.function, createdAt: kept.createdAt, lastUsedAt: kept.lastUsedAt };
}
