/**
 * @module
 * The records database: opening it (WAL, synchronous=NORMAL, incremental auto-vacuum) and its tables.
 * `usage` keeps each function's totals, updated in the same transactions as the rows, so that opening
 * never scans the lines to learn what each function holds. A line's `seq` is AUTOINCREMENT: it only
 * grows, even after every line has been deleted, so a follower's position stays valid (logs.ts).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';

/**
 * The schema's version, in `PRAGMA user_version`. 2: `lines.seq` is AUTOINCREMENT. A database of
 * version 1 is migrated when it is opened (its lines copied into the new table, in one transaction).
 */
const SCHEMA_VERSION = 2;

const DDL = `
CREATE TABLE IF NOT EXISTS invocations (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  function TEXT NOT NULL,
  version TEXT NOT NULL,
  deployment TEXT,
  kind TEXT NOT NULL,
  started INTEGER NOT NULL,
  duration_ms REAL NOT NULL,
  outcome TEXT NOT NULL,
  status INTEGER,
  exit_code INTEGER,
  signal TEXT,
  bytes_in INTEGER NOT NULL,
  bytes_out INTEGER NOT NULL,
  cold INTEGER,
  instance TEXT,
  container TEXT
);
CREATE INDEX IF NOT EXISTS invocations_by_function_time ON invocations (function, started);
CREATE TABLE IF NOT EXISTS lines (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  time INTEGER NOT NULL,
  function TEXT NOT NULL,
  invocation_id TEXT,
  instance TEXT,
  stream TEXT NOT NULL,
  line TEXT NOT NULL,
  bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS lines_by_function_time ON lines (function, time);
CREATE INDEX IF NOT EXISTS lines_by_invocation ON lines (invocation_id) WHERE invocation_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS usage (
  function TEXT PRIMARY KEY,
  line_bytes INTEGER NOT NULL DEFAULT 0,
  lines INTEGER NOT NULL DEFAULT 0,
  records INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
`;

/** Opens (creating it if need be) the database at `file`. */
export function openDatabase(file: string): Database.Database {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const db = new Database(file);
  try {
    // auto_vacuum only takes effect on a database with no tables yet: set before the first CREATE.
    db.pragma('auto_vacuum = INCREMENTAL');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    // The WAL is checkpointed back into the database every 256 pages (1 MiB of 4 KiB pages), and
    // truncated to this size after a checkpoint: it stays about 1 MiB plus the largest transaction.
    db.pragma('wal_autocheckpoint = 256');
    db.pragma('journal_size_limit = 1048576');
    db.pragma('busy_timeout = 5000');
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      throw new Error(`the records database ${file} has schema version ${version}, newer than this fnix's ${SCHEMA_VERSION}; move it away or upgrade fnix`);
    }
    if (version === 1) migrateFrom1(db);
    db.exec(DDL);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}

/** Version 1 to 2: the lines move to a table whose `seq` is AUTOINCREMENT (keeping their seq). */
function migrateFrom1(db: Database.Database): void {
  const columns = 'seq, time, function, invocation_id, instance, stream, line, bytes';
  db.transaction(() => {
    db.exec('ALTER TABLE lines RENAME TO lines_v1; DROP INDEX IF EXISTS lines_by_function_time; DROP INDEX IF EXISTS lines_by_invocation');
    db.exec(DDL);
    db.exec(`INSERT INTO lines (${columns}) SELECT ${columns} FROM lines_v1 ORDER BY seq; DROP TABLE lines_v1`);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  })();
}
