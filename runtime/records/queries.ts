/**
 * @module
 * Reading the records database: a function's last lines (since a time, of one invocation), its
 * invocations newest first, and one invocation with its lines. Each query is one indexed statement.
 */
import type Database from 'better-sqlite3';
import type { StoredLine } from './follow.ts';
import type { InvocationRecord, LogStream, RecordKind } from './types.ts';

/** The most lines or records one query returns. */
export const MAX_QUERY_ROWS = 10_000;

/** A query of a function's lines. */
export interface LinesQuery {
  function: string;
  /** Lines at or after this time (ms since the epoch). */
  sinceMs?: number | undefined;
  /** The last this many. */
  limit: number;
  invocationId?: string | undefined;
}

/** A query of a function's invocation records. */
export interface RecordsQuery {
  function: string;
  sinceMs?: number | undefined;
  limit: number;
  outcome?: string | undefined;
}

interface LineRow {
  seq: number;
  time: number;
  function: string;
  invocation_id: string | null;
  instance: string | null;
  stream: LogStream;
  line: string;
}

interface RecordRow {
  id: string;
  function: string;
  version: string;
  deployment: string | null;
  kind: RecordKind;
  started: number;
  duration_ms: number;
  outcome: string;
  status: number | null;
  exit_code: number | null;
  signal: string | null;
  bytes_in: number;
  bytes_out: number;
  cold: number | null;
  instance: string | null;
  container: string | null;
}

const LINE_COLUMNS = 'seq, time, function, invocation_id, instance, stream, line';

/** The read statements of one database, prepared once. */
export class RecordQueries {
  readonly #lastLines: Database.Statement;
  readonly #invocationLines: Database.Statement;
  readonly #functionInvocationLines: Database.Statement;
  readonly #records: Database.Statement;
  readonly #recordsByOutcome: Database.Statement;
  readonly #record: Database.Statement;

  constructor(db: Database.Database) {
    this.#lastLines = db.prepare(`SELECT ${LINE_COLUMNS} FROM lines WHERE function = ? AND time >= ? ORDER BY time DESC, seq DESC LIMIT ?`);
    this.#functionInvocationLines = db.prepare(
      `SELECT ${LINE_COLUMNS} FROM lines WHERE invocation_id = ? AND function = ? AND time >= ? ORDER BY seq DESC LIMIT ?`,
    );
    this.#invocationLines = db.prepare(`SELECT ${LINE_COLUMNS} FROM lines WHERE invocation_id = ? ORDER BY seq LIMIT ${MAX_QUERY_ROWS}`);
    this.#records = db.prepare('SELECT * FROM invocations WHERE function = ? AND started >= ? ORDER BY started DESC, seq DESC LIMIT ?');
    this.#recordsByOutcome = db.prepare(
      'SELECT * FROM invocations WHERE function = ? AND started >= ? AND outcome = ? ORDER BY started DESC, seq DESC LIMIT ?',
    );
    this.#record = db.prepare('SELECT * FROM invocations WHERE id = ?');
  }

  /** The last `limit` lines matching `query`, oldest first. */
  lines(query: LinesQuery): StoredLine[] {
    const since = query.sinceMs ?? 0;
    const rows = (
      query.invocationId === undefined
        ? this.#lastLines.all(query.function, since, query.limit)
        : this.#functionInvocationLines.all(query.invocationId, query.function, since, query.limit)
    ) as LineRow[];
    return rows.reverse().map(lineOf);
  }

  /** The newest `limit` records matching `query`, newest first. */
  records(query: RecordsQuery): InvocationRecord[] {
    const since = query.sinceMs ?? 0;
    const rows = (
      query.outcome === undefined
        ? this.#records.all(query.function, since, query.limit)
        : this.#recordsByOutcome.all(query.function, since, query.outcome, query.limit)
    ) as RecordRow[];
    return rows.map(recordOf);
  }

  /** One invocation's record and its lines (the first {@link MAX_QUERY_ROWS}), or undefined. */
  invocation(id: string): { invocation: InvocationRecord; lines: StoredLine[] } | undefined {
    const row = this.#record.get(id) as RecordRow | undefined;
    if (!row) return undefined;
    return { invocation: recordOf(row), lines: (this.#invocationLines.all(id) as LineRow[]).map(lineOf) };
  }
}

function lineOf(row: LineRow): StoredLine {
  return {
    seq: row.seq,
    time: new Date(row.time).toISOString(),
    function: row.function,
    invocationId: row.invocation_id,
    instance: row.instance,
    stream: row.stream,
    line: row.line,
  };
}

function recordOf(row: RecordRow): InvocationRecord {
  return {
    id: row.id,
    function: row.function,
    version: row.version,
    deployment: row.deployment,
    kind: row.kind,
    startedAt: new Date(row.started).toISOString(),
    durationMs: row.duration_ms,
    outcome: row.outcome,
    status: row.status,
    exitCode: row.exit_code,
    signal: row.signal,
    bytesIn: row.bytes_in,
    bytesOut: row.bytes_out,
    cold: row.cold === null ? null : row.cold === 1,
    instance: row.instance,
    container: row.container,
  };
}
