/**
 * @module
 * One etcd prefix kept in memory: read whole at open, then kept current by a watch, so that reads
 * are synchronous and never wait on etcd. The cluster's secrets (secret-store.ts) and invoke keys
 * (key-store.ts) are each such a mirror with a parser.
 *
 * The mirror holds the prefix as etcd had it at {@link PrefixMirror.revision}: every change up to that
 * revision is applied, in order, and it stays so whatever happens to the watch:
 * - etcd3's watcher reconnects by itself; on each reconnect the mirror reads the prefix again (at one
 *   revision R, page by page), applies the difference, and drops the watch's events at or below R
 *   (those that arrive during the read are held and applied after it);
 * - a watch that etcd cancels (its revision was compacted away) is replaced: read again, then watch
 *   from R + 1;
 * - every `checkMs`, one small range (the count of keys and the newest one by revision) tells whether
 *   the mirror still matches etcd; when it does not (a watch that is down while etcd answers, or one
 *   that missed something), the prefix is read again.
 * So a change reaches the mirror through the watch in milliseconds, and within `checkMs` as long as
 * etcd answers. When it does not, the mirror keeps the last values it had, and {@link
 * PrefixMirror.lastSyncAt} says since when.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { type Etcd3, type IKeyValue, type IWatchResponse, Range, type Watcher } from 'etcd3';
import { FnixError } from '../../runtime/errors.ts';
import type { Logger } from '../../runtime/log.ts';

/** A key's value changed: set (first time or again), or gone (removed, or its new value is unusable). */
export interface MirrorChange<T> {
  /** The key, without the prefix. */
  name: string;
  /** The value now; undefined when the key is gone. */
  value: T | undefined;
  /** The value before; undefined when there was none. */
  previous: T | undefined;
}

/** Options of {@link PrefixMirror.open}. */
export interface PrefixMirrorOptions<T> {
  client: Etcd3;
  /** The prefix, such as `/fnix/prod/secrets/`. */
  prefix: string;
  /** What the prefix holds, for messages: `secrets`, `invoke keys`. */
  what: string;
  /**
   * A key's value as the mirror keeps it, or undefined to leave the key out (the parser logs why).
   * Called once for each version of each key.
   */
  parse: (name: string, value: Buffer) => T | undefined;
  log: Logger;
  /** How often the mirror checks that it matches etcd. @default 2000 */
  checkMs?: number | undefined;
  /** The deadline of each call to etcd. @default 5000 */
  timeoutMs?: number | undefined;
  /** Keys per page when the prefix is read (values are up to 90 KB for secrets; gRPC takes 4 MiB a message). @default 500 */
  pageSize?: number | undefined;
}

interface Entry<T> {
  /** Undefined for a key whose value did not parse: kept, so that it is not parsed (and logged) again. */
  value: T | undefined;
  modRevision: bigint;
}

interface HeldEvent {
  type: 'Put' | 'Delete';
  kv: IKeyValue;
}

/** A prefix of etcd, in memory. */
export class PrefixMirror<T> {
  readonly #client: Etcd3;
  readonly #prefix: string;
  readonly #range: Range;
  readonly #what: string;
  readonly #parse: (name: string, value: Buffer) => T | undefined;
  readonly #log: Logger;
  readonly #timeoutMs: number;
  readonly #pageSize: number;
  readonly #entries = new Map<string, Entry<T>>();
  readonly #listeners = new Set<(change: MirrorChange<T>) => void>();
  readonly #waiters = new Set<{ revision: bigint; resolve: () => void }>();
  readonly #timer: NodeJS.Timeout;
  /** Events at or below this revision are in the mirror already (a read at it, or a check that matched it). */
  #floor = 0n;
  /** The mirror holds the prefix as it was at this revision. */
  #revision = 0n;
  #watcher: Watcher | undefined;
  #watching = false;
  /** The watch's events that arrived during a read, applied after it. */
  #held: HeldEvent[] | undefined;
  #reading: Promise<boolean> | undefined;
  /** A read failed: the next check reads again instead of comparing. */
  #owed = false;
  #checking = false;
  #lastSyncAt: number | undefined;
  #brokenSince: number | undefined;
  #closed = false;

  private constructor(options: PrefixMirrorOptions<T>) {
    this.#client = options.client;
    this.#prefix = options.prefix;
    this.#range = Range.prefix(options.prefix);
    this.#what = options.what;
    this.#parse = options.parse;
    this.#log = options.log;
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#pageSize = options.pageSize ?? 500;
    const checkMs = options.checkMs ?? 2000;
    if (!(checkMs > 0)) throw new TypeError(`checkMs must be positive, got ${checkMs}`);
    this.#timer = setInterval(() => void this.#check(), checkMs);
    this.#timer.unref();
  }

  /**
   * Reads the prefix, then watches it. Throws CLUSTER_UNAVAILABLE when etcd does not answer; the
   * parser is called for every key before this resolves.
   */
  static async open<T>(options: PrefixMirrorOptions<T>): Promise<PrefixMirror<T>> {
    const mirror = new PrefixMirror(options);
    let failure: unknown;
    if (!(await mirror.#read((error) => (failure = error)))) {
      clearInterval(mirror.#timer);
      throw new FnixError(
        'CLUSTER_UNAVAILABLE',
        `could not read the cluster's ${options.what} from etcd (${describe(failure)}): check that etcd is up and that FNIX_CLUSTER_ETCD names its client URLs`,
        { cause: failure },
      );
    }
    mirror.#watch();
    return mirror;
  }

  /** The value of `name`; undefined when it is not set (or its value is unusable). */
  get(name: string): T | undefined {
    return this.#entries.get(name)?.value;
  }

  /** The revision `name` was last changed at; undefined when it is not in etcd. */
  modRevision(name: string): bigint | undefined {
    return this.#entries.get(name)?.modRevision;
  }

  /** Every usable value, by name. */
  *values(): IterableIterator<[string, T]> {
    for (const [name, entry] of this.#entries) if (entry.value !== undefined) yield [name, entry.value];
  }

  /** How many keys the prefix has in etcd, usable or not. */
  get size(): number {
    return this.#entries.size;
  }

  /** The revision the mirror holds the prefix at. */
  revision(): bigint {
    return this.#revision;
  }

  /**
   * When the mirror was last known to hold what etcd holds (a read, or a check that matched);
   * undefined before the first. Within `checkMs` of now while etcd answers.
   */
  lastSyncAt(): Date | undefined {
    return this.#lastSyncAt === undefined ? undefined : new Date(this.#lastSyncAt);
  }

  /** Whether the watch is connected now. */
  watching(): boolean {
    return this.#watching;
  }

  /** Calls `listener` on every change, as it is applied; returns an unsubscribe. */
  onChange(listener: (change: MirrorChange<T>) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Resolves once the mirror holds revision `revision` (what a write of this node was answered with),
   * its listeners told. The watch brings it in milliseconds; when it has not after a moment, the
   * prefix is read again. Throws CLUSTER_UNAVAILABLE after `timeoutMs`, saying that `done` happened.
   */
  async waitFor(revision: bigint, done: string): Promise<void> {
    if (this.#revision >= revision) return;
    const deadline = Date.now() + this.#timeoutMs;
    let waiter: { revision: bigint; resolve: () => void } | undefined;
    const reached = new Promise<void>((resolve) => {
      waiter = { revision, resolve };
      this.#waiters.add(waiter);
    });
    try {
      for (;;) {
        const left = deadline - Date.now();
        await Promise.race([reached, sleep(Math.max(0, Math.min(250, left)))]);
        if (this.#revision >= revision) return;
        if (this.#closed) throw new FnixError('SHUTTING_DOWN', `${done}; this node is shutting down`);
        if (Date.now() >= deadline) {
          throw new FnixError(
            'CLUSTER_UNAVAILABLE',
            `${done}, but this node did not see it come back from etcd within ${this.#timeoutMs} ms: ` +
              'it will as soon as etcd answers again; check that etcd is up',
          );
        }
        await this.#read();
      }
    } finally {
      if (waiter) this.#waiters.delete(waiter);
    }
  }

  /** Stops watching and checking. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    for (const waiter of this.#waiters) waiter.resolve();
    const watcher = this.#watcher;
    this.#watcher = undefined;
    this.#watching = false;
    if (watcher) await Promise.race([watcher.cancel().catch(() => {}), sleep(1000)]);
  }

  /** Watches the prefix from the revision after the mirror's. */
  #watch(): void {
    // `watcher()` rather than `create()`: the listeners are on before any event can come.
    const watcher = this.#client
      .watch()
      .prefix(this.#prefix)
      .startRevision(String(this.#floor + 1n))
      .watcher();
    this.#watcher = watcher;
    let connectedBefore = false;
    watcher.on('connected', () => {
      if (watcher !== this.#watcher) return;
      this.#watching = true;
      if (this.#brokenSince !== undefined) {
        this.#log.info(`the watch of the cluster's ${this.#what} in etcd is back: reading them again`, {
          brokenForMs: Date.now() - this.#brokenSince,
        });
        this.#brokenSince = undefined;
      }
      // A new watch starts where the mirror is; a reconnected one may have lost events on the way.
      if (connectedBefore) void this.#read();
      connectedBefore = true;
    });
    watcher.on('disconnected', (error: unknown) => {
      if (watcher !== this.#watcher) return;
      this.#watching = false;
      this.#broken(error);
    });
    watcher.on('data', (response: IWatchResponse) => {
      if (watcher !== this.#watcher) return;
      this.#receive((response.events ?? []) as HeldEvent[]);
    });
    watcher.on('error', (error: unknown) => {
      // Cancelled by etcd (its start revision was compacted): etcd3 drops it; a new one replaces it.
      if (watcher !== this.#watcher) return;
      this.#watcher = undefined;
      this.#watching = false;
      this.#brokenSince ??= Date.now();
      this.#log.warn(`etcd cancelled the watch of the cluster's ${this.#what}: reading them again, then watching anew`, { error: describe(error) });
      void this.#rewatch();
    });
  }

  #broken(error: unknown): void {
    if (this.#brokenSince !== undefined || this.#closed) return;
    this.#brokenSince = Date.now();
    this.#log.warn(`the watch of the cluster's ${this.#what} in etcd broke: this node keeps the values it has and reconnects`, {
      error: describe(error),
    });
  }

  /** Reads the prefix again, then watches it from there. */
  async #rewatch(): Promise<void> {
    if (this.#closed || this.#watcher) return;
    if ((await this.#read()) && !this.#closed && !this.#watcher) this.#watch();
  }

  #receive(events: HeldEvent[]): void {
    if (this.#held) {
      this.#held.push(...events);
      return;
    }
    for (const event of events) this.#apply(event);
    this.#settle();
  }

  #apply(event: HeldEvent): void {
    const revision = BigInt(event.kv.mod_revision);
    if (revision <= this.#floor) return;
    const name = this.#nameOf(event.kv.key);
    if (event.type === 'Put') this.#put(name, event.kv.value, revision);
    else this.#delete(name);
    if (revision > this.#revision) this.#revision = revision;
  }

  #put(name: string, raw: Buffer, revision: bigint): void {
    const before = this.#entries.get(name);
    if (before?.modRevision === revision) return;
    const value = this.#parse(name, raw);
    this.#entries.set(name, { value, modRevision: revision });
    if (before?.value !== undefined || value !== undefined) this.#emit({ name, value, previous: before?.value });
  }

  #delete(name: string): void {
    const before = this.#entries.get(name);
    if (!before) return;
    this.#entries.delete(name);
    if (before.value !== undefined) this.#emit({ name, value: undefined, previous: before.value });
  }

  #emit(change: MirrorChange<T>): void {
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch (error) {
        this.#log.error(`a listener of the cluster's ${this.#what} failed`, { name: change.name, error: describe(error) });
      }
    }
  }

  /** Resolves the waiters the mirror's revision reached. */
  #settle(): void {
    for (const waiter of this.#waiters) {
      if (waiter.revision <= this.#revision) {
        this.#waiters.delete(waiter);
        waiter.resolve();
      }
    }
  }

  #synced(): void {
    this.#lastSyncAt = Date.now();
  }

  /** Reads the whole prefix at one revision and applies the difference; one read at a time. */
  #read(onError?: (error: unknown) => void): Promise<boolean> {
    this.#reading ??= this.#readNow(onError).finally(() => {
      this.#reading = undefined;
    });
    return this.#reading;
  }

  async #readNow(onError?: (error: unknown) => void): Promise<boolean> {
    this.#held = [];
    try {
      const kvs: IKeyValue[] = [];
      let revision: bigint | undefined;
      let from = this.#range.start;
      for (;;) {
        const page = await this.#client.kv.range(
          { key: from, range_end: this.#range.end, limit: this.#pageSize, ...(revision === undefined ? {} : { revision: String(revision) }) },
          { deadline: Date.now() + this.#timeoutMs },
        );
        revision ??= BigInt(page.header.revision);
        kvs.push(...page.kvs);
        const last = page.kvs.at(-1);
        if (!page.more || !last) break;
        from = Buffer.concat([last.key, Buffer.from([0])]);
      }
      const seen = new Set<string>();
      for (const kv of kvs) {
        const name = this.#nameOf(kv.key);
        seen.add(name);
        this.#put(name, kv.value, BigInt(kv.mod_revision));
      }
      for (const name of [...this.#entries.keys()]) if (!seen.has(name)) this.#delete(name);
      if (revision > this.#floor) this.#floor = revision;
      if (revision > this.#revision) this.#revision = revision;
      this.#owed = false;
      this.#synced();
      return true;
    } catch (error) {
      this.#owed = true;
      onError?.(error);
      return false;
    } finally {
      const held = this.#held;
      this.#held = undefined;
      for (const event of held) this.#apply(event);
      this.#settle();
    }
  }

  /** Whether the mirror still holds what etcd holds; reads again when it does not. */
  async #check(): Promise<void> {
    if (this.#closed || this.#checking || this.#reading) return;
    this.#checking = true;
    try {
      if (!this.#watcher) return await this.#rewatch();
      if (this.#owed) {
        await this.#read();
        return;
      }
      // The count and the newest key: a put the mirror lacks makes etcd's newest newer than the
      // mirror's, and a delete alone makes the count smaller.
      const response = await this.#client.kv.range(
        { key: this.#range.start, range_end: this.#range.end, limit: 1, sort_order: 'Descend', sort_target: 'Mod', keys_only: true },
        { deadline: Date.now() + this.#timeoutMs },
      );
      const at = BigInt(response.header.revision);
      const newest = response.kvs[0] ? BigInt(response.kvs[0].mod_revision) : undefined;
      if (this.#reading) return;
      if (this.#revision >= at || (Number(response.count) === this.#entries.size && newest === this.#newest())) {
        if (at > this.#floor) this.#floor = at;
        if (at > this.#revision) this.#revision = at;
        this.#synced();
        this.#settle();
      } else {
        await this.#read();
      }
    } catch {
      // etcd does not answer: the mirror keeps what it has, and lastSyncAt stays where it was.
    } finally {
      this.#checking = false;
    }
  }

  #newest(): bigint | undefined {
    let newest: bigint | undefined;
    for (const entry of this.#entries.values()) if (newest === undefined || entry.modRevision > newest) newest = entry.modRevision;
    return newest;
  }

  #nameOf(key: Buffer): string {
    return key.toString('utf8').slice(this.#prefix.length);
  }
}

/**
 * A backoff for etcd3's watch reconnects (its `faultHandling.watchBackoff`): 100 ms, doubling up to
 * `maxMs`. etcd3's default grows to 30 s, which would leave a watch down that long after etcd is back
 * (the mirrors' checks still bring changes within their `checkMs` meanwhile).
 */
export function watchBackoff(maxMs = 2000): Backoff {
  const step = (duration: number): Backoff => ({ duration, next: () => step(Math.min(maxMs, duration * 2)) });
  return { duration: 100, next: () => step(100) };
}

/** What etcd3 (cockatiel) takes as a backoff. */
export interface Backoff {
  readonly duration: number;
  next(context: unknown): Backoff;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
