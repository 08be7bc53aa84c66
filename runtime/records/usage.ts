/**
 * @module
 * Keeps each function within its bounds: its totals (the `usage` table, mirrored in memory), and the
 * deletions, oldest first, that bring a function back under its log bytes and record count, or drop
 * what is older than the age bound. Every change to the rows goes through here, inside the store's
 * transactions ({@link Usage.within}), so the totals stay exact: a transaction's changes reach the
 * totals in memory only once it has committed, and are forgotten if it rolls back.
 */
import type Database from 'better-sqlite3';
import type { RecordBounds } from './bounds.ts';

/** What one function holds. */
export interface FunctionUsage {
  lineBytes: number;
  lines: number;
  records: number;
}

/**
 * Trimming goes down to this share of a bound, not just under it: a function at its bound would
 * otherwise be trimmed by a few rows at every flush.
 */
const TRIM_TO = 0.9;

/**
 * The most rows one trim deletes of a function beyond what brings it back under its bound: the rest of
 * the way down to {@link TRIM_TO} is left to its next trims, so that no flush blocks the event loop for
 * long (deleting 10 % of 16 MiB of short lines, about 9,000 rows, took 40 ms or more; docs/logs.md).
 */
export const TRIM_MAX_ROWS = 2000;

/** The totals and the deletions of one database. */
export class Usage {
  readonly #bounds: RecordBounds;
  /** The committed totals. */
  readonly #byFunction = new Map<string, FunctionUsage>();
  /** The totals changed by the transaction under way, not yet committed. */
  readonly #staged = new Map<string, FunctionUsage>();
  readonly #add: Database.Statement;
  readonly #oldestLines: Database.Statement;
  readonly #deleteOldestLines: Database.Statement;
  readonly #deleteOldestRecords: Database.Statement;
  readonly #agedLines: Database.Statement;
  readonly #deleteAgedLines: Database.Statement;
  readonly #deleteAgedRecords: Database.Statement;
  readonly #dropEmpty: Database.Statement;

  constructor(db: Database.Database, bounds: RecordBounds) {
    this.#bounds = bounds;
    for (const row of db.prepare('SELECT function, line_bytes, lines, records FROM usage').all() as Array<Record<string, number | string>>) {
      this.#byFunction.set(String(row['function']), { lineBytes: Number(row['line_bytes']), lines: Number(row['lines']), records: Number(row['records']) });
    }
    this.#add = db.prepare(
      `INSERT INTO usage (function, line_bytes, lines, records) VALUES (?, ?, ?, ?)
       ON CONFLICT (function) DO UPDATE SET line_bytes = line_bytes + excluded.line_bytes, lines = lines + excluded.lines, records = records + excluded.records`,
    );
    this.#oldestLines = db.prepare('SELECT bytes FROM lines WHERE function = ? ORDER BY time, seq');
    this.#deleteOldestLines = db.prepare('DELETE FROM lines WHERE seq IN (SELECT seq FROM lines WHERE function = ? ORDER BY time, seq LIMIT ?)');
    this.#deleteOldestRecords = db.prepare(
      'DELETE FROM invocations WHERE seq IN (SELECT seq FROM invocations WHERE function = ? ORDER BY started, seq LIMIT ?)',
    );
    this.#agedLines = db.prepare('SELECT COUNT(*) AS count, COALESCE(SUM(bytes), 0) AS bytes FROM lines WHERE function = ? AND time < ?');
    this.#deleteAgedLines = db.prepare('DELETE FROM lines WHERE function = ? AND time < ?');
    this.#deleteAgedRecords = db.prepare('DELETE FROM invocations WHERE function = ? AND started < ?');
    this.#dropEmpty = db.prepare('DELETE FROM usage WHERE function = ? AND lines = 0 AND records = 0');
  }

  /** What `fn` holds now (inside a transaction, with its changes so far). */
  of(fn: string): FunctionUsage {
    return this.#staged.get(fn) ?? this.#byFunction.get(fn) ?? { lineBytes: 0, lines: 0, records: 0 };
  }

  /**
   * Runs `transaction` (a better-sqlite3 transaction that changes the rows through this object): its
   * changes to the totals are kept if it commits, and dropped if it throws (a failed COMMIT included).
   */
  within<T>(transaction: () => T): T {
    let result: T;
    try {
      result = transaction();
    } catch (error) {
      this.#staged.clear();
      throw error;
    }
    for (const [fn, usage] of this.#staged) {
      if (usage.lines <= 0 && usage.records <= 0) this.#byFunction.delete(fn);
      else this.#byFunction.set(fn, usage);
    }
    this.#staged.clear();
    return result;
  }

  /** Every function that holds something. */
  functions(): string[] {
    return [...this.#byFunction.keys()];
  }

  /** Adds (or, negative, takes away) to `fn`'s totals. Inside a transaction ({@link within}). */
  change(fn: string, delta: FunctionUsage): void {
    const now = this.of(fn);
    const next = { lineBytes: now.lineBytes + delta.lineBytes, lines: now.lines + delta.lines, records: now.records + delta.records };
    this.#add.run(fn, delta.lineBytes, delta.lines, delta.records);
    if (next.lines <= 0 && next.records <= 0) this.#dropEmpty.run(fn);
    this.#staged.set(fn, next);
  }

  /**
   * Brings `fn` back within its log bytes and record count, deleting its oldest rows: always under the
   * bound, and down towards {@link TRIM_TO} of it, {@link TRIM_MAX_ROWS} rows at a time (more only when
   * more are needed to get under the bound). Inside a transaction.
   */
  enforce(fn: string): { lines: number; records: number } {
    const usage = this.of(fn);
    let lines = 0;
    let records = 0;
    const { maxLogBytes, maxRecords } = this.#bounds;
    if (usage.lineBytes > maxLogBytes) {
      const needed = usage.lineBytes - maxLogBytes;
      const wanted = usage.lineBytes - Math.floor(maxLogBytes * TRIM_TO);
      let freed = 0;
      for (const row of this.#oldestLines.iterate(fn) as IterableIterator<{ bytes: number }>) {
        freed += row.bytes;
        lines += 1;
        if (freed >= wanted || (freed >= needed && lines >= TRIM_MAX_ROWS)) break;
      }
      this.#deleteOldestLines.run(fn, lines);
      this.change(fn, { lineBytes: -freed, lines: -lines, records: 0 });
    }
    if (usage.records > maxRecords) {
      const needed = usage.records - maxRecords;
      const wanted = usage.records - Math.floor(maxRecords * TRIM_TO);
      records = Math.max(needed, Math.min(wanted, TRIM_MAX_ROWS));
      this.#deleteOldestRecords.run(fn, records);
      this.change(fn, { lineBytes: 0, lines: 0, records: -records });
    }
    return { lines, records };
  }

  /** Deletes `fn`'s lines and records older than `cutoff` (ms since the epoch). Inside a transaction. */
  expire(fn: string, cutoff: number): { lines: number; records: number } {
    const aged = this.#agedLines.get(fn, cutoff) as { count: number; bytes: number };
    if (aged.count > 0) this.#deleteAgedLines.run(fn, cutoff);
    const records = this.#deleteAgedRecords.run(fn, cutoff).changes;
    if (aged.count > 0 || records > 0) this.change(fn, { lineBytes: -aged.bytes, lines: -aged.count, records: -records });
    return { lines: aged.count, records };
  }
}
