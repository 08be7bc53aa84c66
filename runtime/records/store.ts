/**
 * @module
 * The records store: invocation records and log lines in one SQLite database (better-sqlite3) at
 * `<stateDir>/records/records.db`, kept within the bounds of bounds.ts. Appends are buffered and
 * written together, in one transaction, every `flushMs` or every `flushRows` rows, so that a function
 * writing a line at a time costs a push to an array, not a write to disk; queries flush first, so they
 * see everything appended before them. better-sqlite3 is synchronous: a flush blocks the event loop for
 * its duration, which {@link RecordStore.stats} reports (docs/logs.md has the figures).
 *
 * Floods are bounded twice: each function's lines pass through a byte budget per second (rate.ts),
 * and each function's rows are trimmed, oldest first, to its byte and record bounds (usage.ts).
 * Deleted pages are reused by later writes; the periodic maintenance also deletes what is older than
 * the age bound and gives free pages back to the file system (auto_vacuum=INCREMENTAL).
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { FnixError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { cutLine, LINE_OVERHEAD_BYTES, type RecordBounds, resolveBounds } from './bounds.ts';
import { Followers, type LineListener, type StoredLine } from './follow.ts';
import { type LinesQuery, RecordQueries, type RecordsQuery } from './queries.ts';
import { type DroppedReport, RateBudget } from './rate.ts';
import { openDatabase } from './schema.ts';
import type { InvocationRecord, LineInput } from './types.ts';
import { type FunctionUsage, Usage } from './usage.ts';
import { type BatchResult, type PendingLine, RecordWriter } from './writer.ts';

/** Options for {@link RecordStore.open}. */
export interface RecordStoreOptions {
  /** The state folder: the database is `<stateDir>/records/records.db`. */
  stateDir: string;
  /** @default DEFAULT_RECORD_BOUNDS */
  bounds?: Partial<RecordBounds> | undefined;
  /** How often appended rows are written. @default 100 */
  flushMs?: number;
  /** Appended rows that are written at once, without waiting for the timer (a flush of 1000 short lines took about 10 ms). @default 1000 */
  flushRows?: number;
  /** How often old rows are deleted and free pages returned. @default 60000 */
  maintenanceMs?: number;
  /** Log followers at once. @default 64 */
  maxFollowers?: number;
  /** Where a failed write is reported. */
  log?: Logger | undefined;
  /** @default Date.now */
  now?: () => number;
}

/** What the store has done, for measurement. */
export interface StoreStats {
  flushes: number;
  /** Rows written in all. */
  rowsWritten: number;
  /** The longest flush, in ms, and the last one's. */
  maxFlushMs: number;
  lastFlushMs: number;
  /** Lines refused by the rate budget. */
  linesDropped: number;
  /** Rows deleted to keep within the bounds. */
  rowsTrimmed: number;
  /** The database file and its WAL, in bytes. */
  fileBytes: number;
}

/** The records database, open. */
export class RecordStore {
  readonly file: string;
  readonly bounds: RecordBounds;
  readonly #db: Database.Database;
  readonly #queries: RecordQueries;
  readonly #usage: Usage;
  readonly #rate: RateBudget;
  readonly #followers: Followers;
  readonly #now: () => number;
  readonly #log: Logger | undefined;
  readonly #flushRows: number;
  readonly #writer: RecordWriter;
  readonly #write: Database.Transaction<() => BatchResult>;
  readonly #timers: NodeJS.Timeout[] = [];
  /** Invocations started and not yet recorded, with whoever waits for their record (made only when someone does). */
  readonly #waiting = new Map<string, Array<() => void> | undefined>();
  /** Told when no invocation is expected any more ({@link settle}). */
  readonly #idle = new Set<() => void>();
  #lines: PendingLine[] = [];
  #records: InvocationRecord[] = [];
  #closed = false;
  readonly #stats = { flushes: 0, rowsWritten: 0, maxFlushMs: 0, lastFlushMs: 0, linesDropped: 0, rowsTrimmed: 0 };

  private constructor(file: string, db: Database.Database, options: RecordStoreOptions) {
    this.file = file;
    this.#db = db;
    this.bounds = resolveBounds(options.bounds);
    this.#queries = new RecordQueries(db);
    this.#usage = new Usage(db, this.bounds);
    this.#rate = new RateBudget(this.bounds.ratePerSecond);
    this.#followers = new Followers(options.maxFollowers ?? 64);
    this.#now = options.now ?? Date.now;
    this.#log = options.log;
    this.#flushRows = options.flushRows ?? 1000;
    this.#writer = new RecordWriter(db, this.#usage);
    this.#write = db.transaction(() => this.#writer.write(this.#lines, this.#records, (fn) => this.#followers.has(fn)));
    const flushTimer = setInterval(() => this.#tick(), options.flushMs ?? 100);
    // The first maintenance waits a while, so that opening stays fast however much has expired.
    const maintenance = setInterval(() => this.maintain(), options.maintenanceMs ?? 60_000);
    for (const timer of [flushTimer, maintenance]) timer.unref();
    this.#timers.push(flushTimer, maintenance);
  }

  /** Opens the store of `stateDir`, creating it at first. Throws RUNTIME_UNAVAILABLE when it cannot be opened. */
  static open(options: RecordStoreOptions): RecordStore {
    const file = join(options.stateDir, 'records', 'records.db');
    let db: Database.Database;
    try {
      db = openDatabase(file);
    } catch (error) {
      throw new FnixError(
        'RUNTIME_UNAVAILABLE',
        `the records database ${file} could not be opened (${(error as Error).message}); fix it, or move it away to start afresh`,
        {
          cause: error,
        },
      );
    }
    try {
      return new RecordStore(file, db, options);
    } catch (error) {
      db.close();
      throw error;
    }
  }

  /** Appends a line of output (cut at MAX_LINE_BYTES), within its function's rate budget. */
  line(input: LineInput): void {
    if (this.#closed) return;
    const time = input.time ?? this.#now();
    const text = cutLine(input.line);
    const bytes = Buffer.byteLength(text) + LINE_OVERHEAD_BYTES;
    const reports: DroppedReport[] = [];
    const fits = input.stream === 'fnix' || this.#rate.take(input.function, bytes, time, reports);
    for (const report of reports) this.#pushDropped(report, time);
    if (!fits) {
      this.#stats.linesDropped += 1;
      return;
    }
    this.#lines.push({
      time,
      function: input.function,
      invocationId: input.invocationId ?? null,
      instance: input.instance ?? null,
      stream: input.stream,
      line: text,
      bytes,
    });
    if (this.#lines.length + this.#records.length >= this.#flushRows) this.flush();
  }

  /** Whether `fn` may write more lines this second (a caller may drop whole chunks when not: tap.ts). */
  hasBudget(fn: string): boolean {
    if (this.#closed) return false;
    const now = this.#now();
    const reports: DroppedReport[] = [];
    const room = this.#rate.hasRoom(fn, now, reports);
    for (const report of reports) this.#pushDropped(report, now);
    return room;
  }

  /** Counts `lines` of `fn` dropped by the caller, over the rate (reported with the others). */
  countDropped(fn: string, lines: number): void {
    if (this.#closed || lines === 0) return;
    const now = this.#now();
    const reports: DroppedReport[] = [];
    this.#rate.drop(fn, lines, now, reports);
    for (const report of reports) this.#pushDropped(report, now);
    this.#stats.linesDropped += lines;
  }

  /** Appends an invocation record. */
  record(record: InvocationRecord): void {
    if (this.#closed) return;
    this.#records.push(record);
    if (this.#lines.length + this.#records.length >= this.#flushRows) this.flush();
    const waiters = this.#waiting.get(record.id);
    this.#waiting.delete(record.id);
    for (const resolve of waiters ?? []) resolve();
    if (this.#waiting.size === 0) for (const done of [...this.#idle]) done();
  }

  /** Says that invocation `id` has started: a query for it may wait for its record ({@link waitFor}). */
  expect(id: string): void {
    if (this.#closed || this.#waiting.has(id)) return;
    this.#waiting.set(id, undefined);
  }

  /** Whether invocation `id` has started and its record is not written yet. */
  expects(id: string): boolean {
    return this.#waiting.has(id);
  }

  /** Waits up to `ms` for the record of a started invocation; resolves at once for any other id. */
  async waitFor(id: string, ms: number): Promise<void> {
    if (!this.#waiting.has(id)) return;
    await new Promise<void>((resolve) => {
      const waiters = this.#waiting.get(id) ?? [];
      const timer = setTimeout(() => {
        // Gone, so that polling an invocation that runs for long does not pile up waiters.
        const index = waiters.indexOf(done);
        if (index >= 0) waiters.splice(index, 1);
        resolve();
      }, ms);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      waiters.push(done);
      this.#waiting.set(id, waiters);
    });
  }

  /**
   * Waits up to `ms` for the records of every invocation started and not yet recorded (at shutdown,
   * before {@link close}: records are written a moment after their invocation ends).
   */
  async settle(ms: number): Promise<void> {
    if (this.#closed || this.#waiting.size === 0) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#idle.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#idle.add(done);
    });
  }

  /** Waiters of `id`'s record now (for tests: a timed-out wait leaves none). */
  waitersOf(id: string): number {
    return this.#waiting.get(id)?.length ?? 0;
  }

  /** Writes what is pending, in one transaction, and tells the followers. */
  flush(): void {
    if (this.#lines.length === 0 && this.#records.length === 0) return;
    const begin = performance.now();
    const rows = this.#lines.length + this.#records.length;
    let result: BatchResult;
    try {
      // The totals in memory change only if the transaction commits (usage.ts).
      result = this.#usage.within(this.#write);
    } catch (error) {
      // A full disk, say: what was pending is lost (memory stays bounded), and the store goes on.
      this.#log?.warn('records could not be written', { rows, error: (error as Error).message });
      return;
    } finally {
      this.#lines = [];
      this.#records = [];
    }
    const ms = performance.now() - begin;
    this.#stats.flushes += 1;
    this.#stats.rowsWritten += rows;
    this.#stats.rowsTrimmed += result.trimmed;
    this.#stats.lastFlushMs = ms;
    this.#stats.maxFlushMs = Math.max(this.#stats.maxFlushMs, ms);
    for (const line of result.written) this.#followers.publish(line);
  }

  /** The last lines of a function, oldest first (flushing first). */
  lines(query: LinesQuery): StoredLine[] {
    this.flush();
    return this.#queries.lines(query);
  }

  /** A function's invocation records, newest first. */
  invocations(query: RecordsQuery): InvocationRecord[] {
    this.flush();
    return this.#queries.records(query);
  }

  /** One invocation's record and lines, or undefined. */
  invocation(id: string): { invocation: InvocationRecord; lines: StoredLine[] } | undefined {
    this.flush();
    return this.#queries.invocation(id);
  }

  /** Whether the store holds anything of function `name`. */
  knows(name: string): boolean {
    return this.#usage.of(name).lines > 0 || this.#usage.of(name).records > 0;
  }

  /** What the store counts of function `name` (its rows, as the bounds see them). */
  usage(name: string): FunctionUsage {
    return { ...this.#usage.of(name) };
  }

  /**
   * Tells `listener` every line of `fn` stored from now on, and `onClose` if the store closes first;
   * returns the unsubscribe. Throws NO_CAPACITY when the most followers are connected.
   */
  follow(fn: string, listener: LineListener, onClose?: () => void): () => void {
    return this.#followers.add(fn, listener, onClose);
  }

  /** Deletes what is older than the age bound, and returns free pages to the file system. */
  maintain(): void {
    if (this.#closed) return;
    this.flush();
    const cutoff = this.#now() - this.bounds.maxAgeMs;
    try {
      this.#stats.rowsTrimmed += this.#usage.within(
        this.#db.transaction(() => {
          let expired = 0;
          for (const fn of this.#usage.functions()) {
            const { lines, records } = this.#usage.expire(fn, cutoff);
            expired += lines + records;
          }
          return expired;
        }),
      );
      this.#db.pragma('incremental_vacuum');
    } catch (error) {
      this.#log?.warn('records maintenance failed', { error: (error as Error).message });
    }
  }

  /** What the store has done so far. */
  stats(): StoreStats {
    return { ...this.#stats, fileBytes: fileSize(this.file) + fileSize(`${this.file}-wal`) };
  }

  /** Writes what is pending (dropped-line counts included) and closes the database. */
  close(): void {
    if (this.#closed) return;
    for (const timer of this.#timers) clearInterval(timer);
    for (const report of this.#rate.drainAll()) this.#pushDropped(report, this.#now());
    this.flush();
    this.#closed = true;
    this.#followers.closeAll();
    for (const waiters of this.#waiting.values()) for (const resolve of waiters ?? []) resolve();
    this.#waiting.clear();
    for (const done of [...this.#idle]) done();
    try {
      this.#db.pragma('wal_checkpoint(TRUNCATE)');
    } finally {
      this.#db.close();
    }
  }

  /** Each flush tick: the counts of windows that dropped lines, then what is pending. */
  #tick(): void {
    const now = this.#now();
    for (const report of this.#rate.sweep(now)) this.#pushDropped(report, now);
    this.flush();
  }

  #pushDropped(report: DroppedReport, time: number): void {
    const line = `${report.dropped} lines dropped: over the log rate of ${this.bounds.ratePerSecond} bytes per second (FNIX_LOG_RATE)`;
    this.#lines.push({
      time,
      function: report.function,
      invocationId: null,
      instance: null,
      stream: 'fnix',
      line,
      bytes: Buffer.byteLength(line) + LINE_OVERHEAD_BYTES,
    });
  }
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
