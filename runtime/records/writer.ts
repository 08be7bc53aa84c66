/**
 * @module
 * The write path of the records store: inserting a batch of lines and records, inside the store's
 * transaction, then updating each function's totals and trimming it to its bounds (usage.ts).
 */
import type Database from 'better-sqlite3';
import type { StoredLine } from './follow.ts';
import type { InvocationRecord, LogLine } from './types.ts';
import type { FunctionUsage, Usage } from './usage.ts';

/** A line waiting to be written: its time in ms, and the bytes it counts against the bounds. */
export interface PendingLine {
  time: number;
  function: string;
  invocationId: string | null;
  instance: string | null;
  stream: LogLine['stream'];
  line: string;
  bytes: number;
}

/** What one batch did. */
export interface BatchResult {
  /** The lines written of the functions `follows` named, with their positions. */
  written: StoredLine[];
  /** Rows deleted to keep within the bounds. */
  trimmed: number;
}

/** Writes batches into one database. */
export class RecordWriter {
  readonly #usage: Usage;
  readonly #insertLine: Database.Statement;
  readonly #insertRecord: Database.Statement;

  constructor(db: Database.Database, usage: Usage) {
    this.#usage = usage;
    this.#insertLine = db.prepare('INSERT INTO lines (time, function, invocation_id, instance, stream, line, bytes) VALUES (?, ?, ?, ?, ?, ?, ?)');
    this.#insertRecord = db.prepare(
      `INSERT OR IGNORE INTO invocations (id, function, version, deployment, kind, started, duration_ms, outcome, status, exit_code, signal, bytes_in, bytes_out, cold, instance, container)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
  }

  /** Inside a transaction: inserts the rows, updates the totals, trims the functions written to. */
  write(lines: readonly PendingLine[], records: readonly InvocationRecord[], follows: (fn: string) => boolean): BatchResult {
    const touched = new Map<string, FunctionUsage>();
    const delta = (fn: string) => {
      let entry = touched.get(fn);
      if (!entry) {
        entry = { lineBytes: 0, lines: 0, records: 0 };
        touched.set(fn, entry);
      }
      return entry;
    };
    const written: StoredLine[] = [];
    for (const l of lines) {
      const { lastInsertRowid } = this.#insertLine.run(l.time, l.function, l.invocationId, l.instance, l.stream, l.line, l.bytes);
      const entry = delta(l.function);
      entry.lineBytes += l.bytes;
      entry.lines += 1;
      if (follows(l.function)) {
        const { time, bytes: _bytes, ...rest } = l;
        written.push({ seq: Number(lastInsertRowid), time: new Date(time).toISOString(), ...rest });
      }
    }
    for (const r of records) {
      const cold = r.cold === null ? null : r.cold ? 1 : 0;
      const { changes } = this.#insertRecord.run(
        r.id,
        r.function,
        r.version,
        r.deployment,
        r.kind,
        Date.parse(r.startedAt),
        r.durationMs,
        r.outcome,
        r.status,
        r.exitCode,
        r.signal,
        r.bytesIn,
        r.bytesOut,
        cold,
        r.instance,
        r.container,
      );
      delta(r.function).records += changes;
    }
    let trimmed = 0;
    for (const [fn, change] of touched) {
      this.#usage.change(fn, change);
      const { lines: linesTrimmed, records: recordsTrimmed } = this.#usage.enforce(fn);
      trimmed += linesTrimmed + recordsTrimmed;
    }
    return { written, trimmed };
  }
}
