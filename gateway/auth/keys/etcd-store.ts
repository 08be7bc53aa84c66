/**
 * @module
 * The cluster's invoke keys, in etcd: `keys/<id>` holds what the file store keeps of a key (its id,
 * name, scope, times and `sha256:` digest of its secret, never the secret), one JSON record a key.
 * Every node keeps them in memory (cluster/state/mirror.ts), which is what requests are checked against, so a
 * check never waits on etcd and a node cut off from it keeps the keys it had.
 *
 * A key revoked on one node is deleted in etcd; every node's watch sees the delete and fires the same
 * `revoked` change the file store fires, so that the KeyGuard there (guard.ts) ends
 * what the key holds open on that node. When a key was last used is noted in memory and written
 * every `flushMs`, only over the record this node last saw (a compare on its revision), so that a
 * flush never brings back a key another node revoked.
 */
import { timingSafeEqual } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { z } from 'zod';
import type { ClusterKeys } from '../../../cluster/keys.ts';
import { PrefixMirror } from '../../../cluster/state/mirror.ts';
import { FnixError } from '../../../runtime/errors.ts';
import { assertFunctionName } from '../../../runtime/functions/name.ts';
import type { Logger } from '../../../runtime/log.ts';
import { MAX_KEY_NAME, MAX_KEYS } from './file-store.ts';
import { KEY_ID_PATTERN, makeKeyText, parseKeyText, secretDigest } from './key-text.ts';
import type { CreatedKey, KeyChange, KeyInfo, KeyRequest, KeyStore } from './store.ts';

const recordSchema = z.strictObject({
  id: z.string().regex(KEY_ID_PATTERN),
  name: z.string().max(MAX_KEY_NAME).nullable(),
  function: z.string().nullable(),
  createdAt: z.string(),
  lastUsedAt: z.string().nullable(),
  hash: z.string().regex(/^sha256:[A-Za-z0-9_-]{43}$/),
});
type KeyRecord = z.infer<typeof recordSchema>;
type Kept = KeyRecord & { digest: Buffer };

/** A digest no secret has, compared against when the id is unknown, so that both paths do the same work. */
const NO_DIGEST = Buffer.alloc(32);

/** Options of {@link EtcdKeyStore.open}. */
export interface EtcdKeyStoreOptions {
  client: Etcd3;
  keys: ClusterKeys;
  log: Logger;
  /** How often the uses noted in memory are written. @default 60000 */
  flushMs?: number | undefined;
  /** The clock. @default () => new Date() */
  now?: (() => Date) | undefined;
  /** The mirror's timings (tests shorten them). */
  mirror?: { checkMs?: number | undefined; timeoutMs?: number | undefined } | undefined;
}

/** The cluster's invoke keys, in etcd, mirrored in memory. */
export class EtcdKeyStore implements KeyStore {
  readonly #client: Etcd3;
  readonly #keys: ClusterKeys;
  readonly #now: () => Date;
  readonly #timeoutMs: number;
  readonly #mirror: PrefixMirror<Kept>;
  readonly #listeners = new Set<(change: KeyChange) => void>();
  readonly #timer: NodeJS.Timeout;
  /** When each key last let a request in on this node, not yet written. */
  readonly #used = new Map<string, string>();
  /** Keys being revoked by this node: refused from the call on, before etcd has answered. */
  readonly #revoking = new Set<string>();
  #flushing: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(options: EtcdKeyStoreOptions, mirror: PrefixMirror<Kept>) {
    this.#client = options.client;
    this.#keys = options.keys;
    this.#now = options.now ?? (() => new Date());
    this.#timeoutMs = options.mirror?.timeoutMs ?? 5000;
    this.#mirror = mirror;
    mirror.onChange(({ value, previous }) => {
      // A record written again (its last use) is neither made nor revoked.
      if (value && !previous) this.#emit({ type: 'created', key: infoOf(value) });
      else if (!value && previous) {
        this.#revoking.delete(previous.id);
        this.#used.delete(previous.id);
        this.#emit({ type: 'revoked', key: infoOf(previous) });
      }
    });
    const flushMs = options.flushMs ?? 60_000;
    if (!(flushMs > 0)) throw new TypeError(`flushMs must be positive, got ${flushMs}`);
    this.#timer = setInterval(() => void this.#flush().catch(() => {}), flushMs); // tried again at the next interval
    this.#timer.unref();
  }

  /** Reads every key from etcd, then watches them. Throws CLUSTER_UNAVAILABLE when etcd does not answer. */
  static async open(options: EtcdKeyStoreOptions): Promise<EtcdKeyStore> {
    const { keys, log } = options;
    const mirror = await PrefixMirror.open<Kept>({
      client: options.client,
      prefix: keys.keys,
      what: 'invoke keys',
      log,
      checkMs: options.mirror?.checkMs,
      timeoutMs: options.mirror?.timeoutMs,
      parse: (name, raw) => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(raw.toString('utf8'));
        } catch {
          parsed = undefined;
        }
        const result = recordSchema.safeParse(parsed);
        if (!result.success || result.data.id !== name) {
          log.error('a key under the invoke keys in etcd is not a key fnix made: it opens nothing; remove it with etcdctl del', { key: keys.key(name) });
          return undefined;
        }
        return { ...result.data, digest: Buffer.from(result.data.hash.slice('sha256:'.length), 'base64url') };
      },
    });
    return new EtcdKeyStore(options, mirror);
  }

  async create(request: KeyRequest): Promise<CreatedKey> {
    const name = request.name ?? null;
    const fn = request.function ?? null;
    if (fn !== null) assertFunctionName(fn);
    if (name !== null && (name.length === 0 || name.length > MAX_KEY_NAME || /\p{Cc}/u.test(name))) {
      throw new FnixError('BAD_REQUEST', `a key's name is 1 to ${MAX_KEY_NAME} characters, with no control characters`);
    }
    if (this.#mirror.size >= MAX_KEYS) throw new FnixError('BAD_REQUEST', `${MAX_KEYS} keys exist, the most fnix keeps: revoke some first`);
    for (;;) {
      const made = makeKeyText();
      const record: KeyRecord = { id: made.id, name, function: fn, createdAt: this.#now().toISOString(), lastUsedAt: null, hash: made.hash };
      const at = this.#keys.key(made.id);
      // Only where no key is: an id made twice (62^12 ids) takes another rather than replacing one.
      const response = await this.#call('could not make the invoke key', () =>
        this.#client
          .if(at, 'Create', '==', 0)
          .then(this.#client.put(at).value(JSON.stringify(record)))
          .options(this.#deadline())
          .commit(),
      );
      if (!response.succeeded) continue;
      await this.#mirror.waitFor(BigInt(response.header.revision), `the invoke key ${made.id} is made in etcd`);
      return { ...infoOf(record), key: made.text };
    }
  }

  list(): KeyInfo[] {
    return [...this.#mirror.values()]
      .filter(([id]) => !this.#revoking.has(id))
      .map(([, kept]) => this.#infoNow(kept))
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  async revoke(id: string): Promise<KeyInfo> {
    if (!KEY_ID_PATTERN.test(id)) throw notFound(id);
    // Refused on this node from here on, even if etcd does not answer below.
    this.#revoking.add(id);
    const response = await this.#call(`could not revoke the invoke key ${id} (this node refuses it already; the others do not yet)`, () =>
      this.#client.kv.deleteRange({ key: Buffer.from(this.#keys.key(id)), prev_kv: true }, this.#deadline()),
    );
    if (Number(response.deleted) === 0) {
      this.#revoking.delete(id);
      throw notFound(id);
    }
    const before = this.#mirror.get(id);
    await this.#mirror.waitFor(BigInt(response.header.revision), `the invoke key ${id} is revoked in etcd`);
    this.#revoking.delete(id);
    const previous = response.prev_kvs[0];
    const record = before ?? (previous ? recordSchema.safeParse(safeJson(previous.value)).data : undefined);
    return record ? infoOf(record) : { id, name: null, function: null, createdAt: '', lastUsedAt: null };
  }

  verify(text: string, functionName: string): { ok: true; key: KeyInfo } | { ok: false; why: 'wrong' | 'scope'; keyId?: string } {
    const parsed = parseKeyText(text);
    const kept = parsed && !this.#revoking.has(parsed.id) ? this.#mirror.get(parsed.id) : undefined;
    const given = secretDigest(parsed?.secret ?? text);
    const matches = timingSafeEqual(given, kept?.digest ?? NO_DIGEST) && kept !== undefined;
    if (!matches || !kept) return { ok: false, why: 'wrong' };
    if (kept.function !== null && kept.function !== functionName) return { ok: false, why: 'scope', keyId: kept.id };
    const now = this.#now().toISOString();
    this.#used.set(kept.id, now);
    return { ok: true, key: { ...infoOf(kept), lastUsedAt: now } };
  }

  onChange(listener: (change: KeyChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** When the mirror was last known to hold what etcd holds (cluster/state/mirror.ts). */
  lastSyncAt(): Date | undefined {
    return this.#mirror.lastSyncAt();
  }

  /** Whether the watch on etcd is connected now (changes then arrive in milliseconds, else within the mirror's check). */
  watching(): boolean {
    return this.#mirror.watching();
  }

  /** Writes the uses not yet written, then stops watching etcd. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    try {
      await this.#flush();
    } finally {
      await this.#mirror.close();
    }
  }

  #emit(change: KeyChange): void {
    for (const listener of this.#listeners) listener(change);
  }

  #infoNow(kept: Kept): KeyInfo {
    const info = infoOf(kept);
    const used = this.#used.get(kept.id);
    return used && (info.lastUsedAt === null || used > info.lastUsedAt) ? { ...info, lastUsedAt: used } : info;
  }

  /** Writes each use noted since the last flush over the record as this node last saw it; one flush at a time. */
  #flush(): Promise<void> {
    const next = this.#flushing.then(() => this.#flushNow());
    this.#flushing = next.catch(() => {});
    return next;
  }

  async #flushNow(): Promise<void> {
    let failure: unknown;
    for (const [id, used] of [...this.#used]) {
      const kept = this.#mirror.get(id);
      const revision = this.#mirror.modRevision(id);
      if (!kept || revision === undefined || (kept.lastUsedAt !== null && kept.lastUsedAt >= used)) {
        if (this.#used.get(id) === used) this.#used.delete(id);
        continue;
      }
      const { digest: _digest, ...record } = kept;
      const at = this.#keys.key(id);
      try {
        const response = await this.#client
          .if(at, 'Mod', '==', String(revision))
          .then(this.#client.put(at).value(JSON.stringify({ ...record, lastUsedAt: used })))
          .options(this.#deadline())
          .commit();
        // Refused: another node wrote it (its own use) or revoked it; the next flush sees which.
        if (response.succeeded && this.#used.get(id) === used) this.#used.delete(id);
      } catch (error) {
        // etcd does not answer: the rest wait for the next flush rather than a deadline each.
        failure = error;
        break;
      }
    }
    if (failure) throw new FnixError('CLUSTER_UNAVAILABLE', `could not write the invoke keys' last uses to etcd: ${String(failure)}`, { cause: failure });
  }

  #deadline(): { deadline: number } {
    return { deadline: Date.now() + this.#timeoutMs };
  }

  async #call<R>(what: string, call: () => Promise<R>): Promise<R> {
    try {
      return await call();
    } catch (error) {
      throw new FnixError(
        'CLUSTER_UNAVAILABLE',
        `${what}: etcd did not answer (${error instanceof Error ? error.message : String(error)}); it may or may not have been done: try again once etcd is up`,
        { cause: error },
      );
    }
  }
}

function infoOf(record: KeyRecord): KeyInfo {
  return { id: record.id, name: record.name, function: record.function, createdAt: record.createdAt, lastUsedAt: record.lastUsedAt };
}

function notFound(id: string): FnixError {
  return new FnixError('KEY_NOT_FOUND', `no invoke key has the id ${JSON.stringify(id.slice(0, 40))}; GET /api/keys lists them`, {
    details: { id: id.slice(0, 40) },
  });
}

function safeJson(raw: Buffer): unknown {
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    return undefined;
  }
}
