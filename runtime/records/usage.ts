/**
 * @module
 * Keeps each function within its bounds: its totals (the `usage` table, mirrored in memory), and the
 * deletions, oldest first, that bring a function back under its log bytes and record count, or drop
 * what is older than the age bound. Every change to the rows goes through here, inside the store's
 * transactions, so the totals stay exact.
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

/** The totals and the deletions of one database. */
export class Usage {
  readonly #bounds: RecordBounds;
  readonly #byFunction = new Map<string, FunctionUsage>();
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

  /** What `fn` holds now. */
  of(fn: string): FunctionUsage {
    return this.#byFunction.get(fn) ?? { lineBytes: 0, lines: 0, records: 0 };
  }

  /** Every function that holds something. */
  functions(): string[] {
    return [...this.#byFunction.keys()];
  }

  /** Adds (or, negative, takes away) to `fn`'s totals. Inside a transaction. */
  change(fn: string, delta: FunctionUsage): void {
    const now = this.of(fn);
    const next = { lineBytes: now.lineBytes + delta.lineBytes, lines: now.lines + delta.lines, records: now.records + delta.records };
    this.#add.run(fn, delta.lineBytes, delta.lines, delta.records);
    if (next.lines <= 0 && next.records <= 0) {
      this.#byFunction.delete(fn);
      this.#dropEmpty.run(fn);
    } else this.#byFunction.set(fn, next);
  }

  /** Brings `fn` back within its log bytes and record count, deleting its oldest rows. Inside a transaction. */
  enforce(fn: string): { lines: number; records: number } {
    const usage = this.of(fn);
    let lines = 0;
    let records = 0;
    if (usage.lineBytes > this.#bounds.maxLogBytes) {
      const excess = usage.lineBytes - Math.floor(this.#bounds.maxLogBytes * TRIM_TO);
      let freed = 0;
      for (const row of this.#oldestLines.iterate(fn) as IterableIterator<{ bytes: number }>) {
        freed += row.bytes;
        lines += 1;
        if (freed >= excess) break;
      }
      this.#deleteOldestLines.run(fn, lines);
      this.change(fn, { lineBytes: -freed, lines: -lines, records: 0 });
    }
    if (usage.records > this.#bounds.maxRecords) {
      records = usage.records - Math.floor(this.#bounds.maxRecords * TRIM_TO);
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
