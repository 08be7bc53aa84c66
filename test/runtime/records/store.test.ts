/**
 * @module
 * runtime/records/store.ts on a real SQLite file in a temporary folder: batching, the bounds (bytes,
 * records, age, rate) trimming oldest first and a little at a time, reopening (a database of schema
 * version 1 included), following, failed writes leaving the totals right, waiting for records, and
 * the file staying bounded.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { LINE_OVERHEAD_BYTES, MAX_LINE_BYTES } from '../../../runtime/records/bounds.ts';
import type { StoredLine } from '../../../runtime/records/follow.ts';
import { RecordStore, type RecordStoreOptions } from '../../../runtime/records/store.ts';
import type { InvocationRecord } from '../../../runtime/records/types.ts';
import { TRIM_MAX_ROWS } from '../../../runtime/records/usage.ts';

const dirs: string[] = [];
const stores: RecordStore[] = [];

afterEach(() => {
  for (const store of stores.splice(0)) store.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function stateDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'fnix-records-'));
  dirs.push(dir);
  return dir;
}

/** A store on `dir` whose timers never fire during a test: flushes happen when the test says. */
function open(dir: string, options: Partial<RecordStoreOptions> = {}): RecordStore {
  const store = RecordStore.open({ stateDir: dir, flushMs: 3_600_000, maintenanceMs: 3_600_000, ...options });
  stores.push(store);
  return store;
}

/** What the database itself holds of `fn`, read through a connection of its own. */
function counted(file: string, fn: string): { lineBytes: number; lines: number; records: number } {
  const db = new Database(file, { readonly: true });
  try {
    const lines = db.prepare('SELECT COUNT(*) AS lines, COALESCE(SUM(bytes), 0) AS lineBytes FROM lines WHERE function = ?').get(fn) as {
      lines: number;
      lineBytes: number;
    };
    const { records } = db.prepare('SELECT COUNT(*) AS records FROM invocations WHERE function = ?').get(fn) as { records: number };
    return { ...lines, records };
  } finally {
    db.close();
  }
}

/** Runs `sql` on the database through a connection of its own (a trigger the store's connection then sees). */
function execOn(file: string, sql: string): void {
  const db = new Database(file);
  try {
    db.exec(sql);
  } finally {
    db.close();
  }
}

function record(id: string, fields: Partial<InvocationRecord> = {}): InvocationRecord {
  return {
    id,
    function: 'hello',
    version: 'v1',
    deployment: 'd1',
    kind: 'http',
    startedAt: new Date().toISOString(),
    durationMs: 1.5,
    outcome: 'OK',
    status: 200,
    exitCode: 0,
    signal: null,
    bytesIn: 3,
    bytesOut: 12,
    cold: false,
    instance: null,
    container: 'fnix-c1',
    ...fields,
  };
}

describe('RecordStore', () => {
  it('keeps records and lines, and finds them by function, invocation and time', () => {
    const store = open(stateDir());
    store.line({ function: 'hello', invocationId: 'a', stream: 'stderr', line: 'one', time: Date.parse('2026-01-01T00:00:00Z') });
    store.line({ function: 'hello', invocationId: 'b', stream: 'stderr', line: 'two' });
    store.line({ function: 'other', invocationId: 'c', stream: 'stderr', line: 'elsewhere' });
    store.record(record('a', { outcome: 'FUNCTION_FAILED', status: 502, exitCode: 3 }));
    store.record(record('b'));
    expect(store.lines({ function: 'hello', limit: 100 }).map((l) => l.line)).toEqual(['one', 'two']);
    expect(store.lines({ function: 'hello', limit: 1 }).map((l) => l.line)).toEqual(['two']);
    expect(store.lines({ function: 'hello', limit: 100, sinceMs: Date.parse('2026-06-01T00:00:00Z') }).map((l) => l.line)).toEqual(['two']);
    expect(store.lines({ function: 'hello', limit: 100, invocationId: 'a' }).map((l) => l.line)).toEqual(['one']);
    const found = store.invocation('a');
    expect(found?.invocation).toMatchObject({ id: 'a', outcome: 'FUNCTION_FAILED', status: 502, exitCode: 3, cold: false, deployment: 'd1' });
    expect(found?.lines.map((l) => [l.line, l.stream, l.invocationId])).toEqual([['one', 'stderr', 'a']]);
    expect(store.invocations({ function: 'hello', limit: 10 }).map((r) => r.id)).toEqual(['b', 'a']);
    expect(store.invocations({ function: 'hello', limit: 10, outcome: 'FUNCTION_FAILED' }).map((r) => r.id)).toEqual(['a']);
    expect(store.invocation('nope')).toBeUndefined();
  });

  it('writes appends in batches: nothing until a flush, then one transaction', () => {
    const store = open(stateDir(), { flushRows: 1000 });
    for (let i = 0; i < 999; i += 1) store.line({ function: 'hello', stream: 'stderr', line: `line ${i}` });
    expect(store.stats().flushes).toBe(0);
    store.line({ function: 'hello', stream: 'stderr', line: 'the thousandth' });
    expect(store.stats()).toMatchObject({ flushes: 1, rowsWritten: 1000 });
  });

  it('measures a flush of 1000 lines, the most one flush writes by default (printed; the event loop is blocked that long)', () => {
    const store = open(stateDir());
    const text = 'x'.repeat(100);
    for (let round = 0; round < 10; round += 1) for (let i = 0; i < 1000; i += 1) store.line({ function: `f${i % 4}`, stream: 'stderr', line: text });
    const { flushes, maxFlushMs, rowsWritten } = store.stats();
    expect([flushes, rowsWritten]).toEqual([10, 10_000]);
    console.log(`records flush of 1000 lines of 100 bytes: at most ${maxFlushMs.toFixed(1)} ms over ${flushes} flushes`);
  });

  it('survives a reopen, totals included', () => {
    const dir = stateDir();
    const first = open(dir);
    first.line({ function: 'hello', invocationId: 'a', stream: 'stderr', line: 'before' });
    first.record(record('a'));
    first.close();
    const second = open(dir);
    expect(second.invocation('a')?.lines.map((l) => l.line)).toEqual(['before']);
    expect(second.knows('hello')).toBe(true);
    expect(second.knows('other')).toBe(false);
  });

  it('opens a database of 50,000 lines without reading them (printed)', () => {
    const dir = stateDir();
    const first = open(dir, { bounds: { ratePerSecond: 1 << 30 } });
    for (let i = 0; i < 50_000; i += 1)
      first.line({ function: `f${i % 10}`, invocationId: `id${i}`, stream: 'stderr', line: `line ${i} of a long-running function` });
    first.close();
    const begin = performance.now();
    const second = open(dir);
    const ms = performance.now() - begin;
    console.log(`records open of a database of 50000 lines: ${ms.toFixed(1)} ms`);
    expect(second.knows('f9')).toBe(true);
    expect(ms).toBeLessThan(2000);
  });

  it('trims a function to its log bytes, oldest first, leaving the others alone', () => {
    const maxLogBytes = 64 * 1024;
    const store = open(stateDir(), { bounds: { maxLogBytes, ratePerSecond: 1 << 30 }, flushRows: 50 });
    store.line({ function: 'quiet', stream: 'stderr', line: 'kept' });
    const text = 'y'.repeat(1000);
    for (let i = 0; i < 1000; i += 1) store.line({ function: 'loud', stream: 'stderr', line: `${i} ${text}` });
    store.flush();
    const kept = store.lines({ function: 'loud', limit: 10_000 });
    const bytes = kept.reduce((sum, l) => sum + Buffer.byteLength(l.line) + LINE_OVERHEAD_BYTES, 0);
    expect(bytes).toBeLessThanOrEqual(maxLogBytes);
    expect(kept.length).toBeGreaterThan(40);
    expect(kept.at(-1)?.line.startsWith('999 ')).toBe(true);
    const first = Number(kept[0]!.line.split(' ')[0]);
    expect(kept.map((l) => Number(l.line.split(' ')[0]))).toEqual(kept.map((_, i) => first + i));
    expect(store.lines({ function: 'quiet', limit: 10 }).map((l) => l.line)).toEqual(['kept']);
  });

  it('keeps at most maxRecords records per function, the newest', () => {
    const store = open(stateDir(), { bounds: { maxRecords: 100 } });
    const base = Date.parse('2026-01-01T00:00:00Z');
    for (let i = 0; i < 250; i += 1) store.record(record(`r${i}`, { startedAt: new Date(base + i * 1000).toISOString() }));
    store.flush();
    const kept = store.invocations({ function: 'hello', limit: 10_000 });
    expect(kept.length).toBeLessThanOrEqual(100);
    expect(kept[0]!.id).toBe('r249');
    expect(store.invocation('r0')).toBeUndefined();
  });

  it('deletes what is older than maxAgeMs at maintenance', () => {
    const clock = { now: Date.parse('2026-01-01T00:00:00Z') };
    const store = open(stateDir(), { bounds: { maxAgeMs: 60_000 }, now: () => clock.now });
    store.line({ function: 'hello', invocationId: 'old', stream: 'stderr', line: 'old' });
    store.record(record('old', { startedAt: new Date(clock.now).toISOString() }));
    clock.now += 120_000;
    store.line({ function: 'hello', invocationId: 'new', stream: 'stderr', line: 'new' });
    store.record(record('new', { startedAt: new Date(clock.now).toISOString() }));
    store.maintain();
    expect(store.lines({ function: 'hello', limit: 10 }).map((l) => l.line)).toEqual(['new']);
    expect(store.invocation('old')).toBeUndefined();
    expect(store.invocation('new')).toBeDefined();
  });

  it('drops lines over the rate budget and says how many, once the window is over', () => {
    const clock = { now: 1_000_000 };
    const ratePerSecond = 10 * (100 + LINE_OVERHEAD_BYTES);
    const store = open(stateDir(), { bounds: { ratePerSecond }, now: () => clock.now });
    const text = 'z'.repeat(100);
    for (let i = 0; i < 50; i += 1) store.line({ function: 'hello', stream: 'stderr', line: text });
    clock.now += 1500;
    store.line({ function: 'hello', stream: 'stderr', line: 'after' });
    const lines = store.lines({ function: 'hello', limit: 100 });
    expect(lines.filter((l) => l.stream === 'stderr' && l.line === text)).toHaveLength(10);
    expect(lines.find((l) => l.stream === 'fnix')?.line).toMatch(/^40 lines dropped/);
    expect(lines.at(-1)?.line).toBe('after');
    expect(store.stats().linesDropped).toBe(40);
  });

  it('writes the count of dropped lines at close', () => {
    const dir = stateDir();
    const store = open(dir, { bounds: { ratePerSecond: 1000 } });
    for (let i = 0; i < 20; i += 1) store.line({ function: 'hello', stream: 'stderr', line: 'w'.repeat(200) });
    store.close();
    const again = open(dir);
    const lines = again.lines({ function: 'hello', limit: 100 });
    // 1000 bytes a second hold two lines of 200 bytes and their overhead: the other 18 are counted.
    expect(lines.map((l) => l.stream)).toEqual(['stderr', 'stderr', 'fnix']);
    expect(lines.at(-1)?.line).toMatch(/^18 lines dropped/);
  });

  it('cuts long lines at MAX_LINE_BYTES on a character boundary', () => {
    const store = open(stateDir());
    store.line({ function: 'hello', stream: 'stderr', line: 'é'.repeat(MAX_LINE_BYTES) });
    const [line] = store.lines({ function: 'hello', limit: 1 });
    expect(Buffer.byteLength(line!.line)).toBeLessThanOrEqual(MAX_LINE_BYTES + ' [line cut]'.length);
    expect(line!.line.endsWith(' [line cut]')).toBe(true);
    expect(line!.line).not.toContain('\uFFFD');
  });

  it('tells followers the lines of their function after the flush that stores them, until they leave', () => {
    const store = open(stateDir());
    const seen: StoredLine[] = [];
    const stop = store.follow('hello', (line) => seen.push(line));
    store.line({ function: 'hello', stream: 'stderr', line: 'one' });
    store.line({ function: 'other', stream: 'stderr', line: 'not mine' });
    expect(seen).toEqual([]);
    store.flush();
    expect(seen.map((l) => l.line)).toEqual(['one']);
    stop();
    store.line({ function: 'hello', stream: 'stderr', line: 'two' });
    store.flush();
    expect(seen.map((l) => l.line)).toEqual(['one']);
  });

  it('caps the followers', () => {
    const store = open(stateDir(), { maxFollowers: 2 });
    const stops = [store.follow('a', () => {}), store.follow('b', () => {})];
    expect(() => store.follow('c', () => {})).toThrow(expect.objectContaining({ code: 'NO_CAPACITY' }));
    stops[0]!();
    expect(() => store.follow('c', () => {})).not.toThrow();
  });

  it('lets a query wait for the record of an invocation that has started', async () => {
    const store = open(stateDir());
    store.expect('x');
    const waited = store.waitFor('x', 10_000).then(() => store.invocation('x'));
    setTimeout(() => store.record(record('x')), 20);
    expect((await waited)?.invocation.id).toBe('x');
    // An id no one expects does not wait.
    await store.waitFor('unknown', 60_000);
  });

  it('stays within its bound on disk under a flood, reusing freed pages', () => {
    const maxLogBytes = 1024 * 1024;
    const store = open(stateDir(), { bounds: { maxLogBytes, ratePerSecond: 1 << 30 } });
    const text = 'f'.repeat(500);
    const sizes: number[] = [];
    for (let round = 0; round < 20; round += 1) {
      for (let i = 0; i < 2000; i += 1) store.line({ function: 'flood', stream: 'stderr', line: text });
      store.flush();
      sizes.push(store.stats().fileBytes);
    }
    store.maintain();
    const after = store.stats().fileBytes;
    console.log(
      `records flood: 20 MiB of lines into a 1 MiB bound: file sizes ${sizes.map((s) => (s / 1024).toFixed(0)).join(' ')} KiB, ${(after / 1024).toFixed(0)} KiB after maintenance`,
    );
    // The file (database and WAL) holds the bound plus what one flush adds before it is trimmed, and the WAL limit.
    expect(Math.max(...sizes.slice(5))).toBeLessThan(3 * maxLogBytes + 4 * 1024 * 1024 + 2000 * (500 + LINE_OVERHEAD_BYTES));
    expect(sizes.at(-1)).toBeLessThanOrEqual(Math.max(...sizes.slice(0, 10)) * 1.1);
  });

  it('leaves the totals as they were when a flush fails, and trims nothing more afterwards', () => {
    const maxLogBytes = 64 * 1024;
    const warnings: string[] = [];
    const log = { info: () => {}, warn: (message: string) => warnings.push(message), error: () => {} };
    const store = open(stateDir(), { bounds: { maxLogBytes, ratePerSecond: 1 << 30 }, log });
    const text = 'a'.repeat(840); // 1000 bytes a line, overhead included
    const write = (fn: string, count: number) => {
      for (let i = 0; i < count; i += 1) store.line({ function: fn, stream: 'stderr', line: text });
    };
    write('f', 30);
    store.flush();
    const before = store.usage('f');
    expect(before).toEqual(counted(store.file, 'f'));
    // The batch's lines of f go in and its totals change, then the write fails and all of it rolls back.
    execOn(store.file, `CREATE TRIGGER fail BEFORE INSERT ON usage WHEN NEW.function = 'boom' BEGIN SELECT RAISE(ABORT, 'disk full (a test)'); END`);
    for (let round = 0; round < 3; round += 1) {
      write('f', 30);
      write('boom', 1);
      store.flush();
    }
    expect(warnings).toEqual(['records could not be written', 'records could not be written', 'records could not be written']);
    expect(store.usage('f')).toEqual(before);
    expect(store.knows('boom')).toBe(false);
    execOn(store.file, 'DROP TRIGGER fail');
    // 30 + 20 lines of 1000 bytes are within 64 KiB: none is trimmed (the failed batches' 90 are not counted).
    write('f', 20);
    store.flush();
    expect(store.lines({ function: 'f', limit: 1000 })).toHaveLength(50);
    expect(store.stats().rowsTrimmed).toBe(0);
    expect(store.usage('f')).toEqual(counted(store.file, 'f'));
    expect(store.usage('f').lines).toBe(50);
  });

  it('trims a flooding function a little at a time: always under its bound, never many rows in one flush', () => {
    const maxLogBytes = 4 * 1024 * 1024;
    const store = open(stateDir(), { bounds: { maxLogBytes, ratePerSecond: 1 << 30 } });
    const text = 's';
    let trimmed = 0;
    let most = 0;
    for (let round = 0; round < 40; round += 1) {
      for (let i = 0; i < 1000; i += 1) store.line({ function: 'flood', stream: 'stderr', line: text });
      store.flush();
      const now = store.stats().rowsTrimmed;
      most = Math.max(most, now - trimmed);
      trimmed = now;
      expect(store.usage('flood').lineBytes).toBeLessThanOrEqual(maxLogBytes);
    }
    // 4 MiB of lines of 161 bytes is 26,050 lines: trimming 10 % at once would delete 2,605 (at 16 MiB of 190-byte lines, 8,800).
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(TRIM_MAX_ROWS);
    expect(store.usage('flood')).toEqual(counted(store.file, 'flood'));
  });

  it('measures the longest flush of a flood at the default bounds, trims included (printed)', () => {
    const clock = { now: Date.parse('2026-01-01T00:00:00Z') };
    const store = open(stateDir(), { now: () => clock.now });
    const text = 'x'.repeat(30);
    // The default rate, 1 MiB a second of 190-byte lines, in flushes every 100 ms, for 60 s: past the 16 MiB bound after 16 s.
    const perFlush = Math.floor(store.bounds.ratePerSecond / (30 + LINE_OVERHEAD_BYTES) / 10);
    const trims: number[] = [];
    let trimmed = 0;
    for (let round = 0; round < 600; round += 1) {
      for (let i = 0; i < perFlush; i += 1) store.line({ function: 'flood', stream: 'stderr', line: text });
      store.flush();
      const stats = store.stats();
      if (stats.rowsTrimmed !== trimmed) trims.push(stats.lastFlushMs);
      trimmed = stats.rowsTrimmed;
      clock.now += 100;
    }
    const { maxFlushMs, rowsTrimmed, linesDropped } = store.stats();
    trims.sort((a, b) => a - b);
    expect(linesDropped).toBe(0);
    expect(trims.length).toBeGreaterThan(0);
    console.log(
      `records flood at the default bounds: ${trims.length} trims of ${rowsTrimmed} rows in all; a trimming flush took ${trims[trims.length >> 1]!.toFixed(1)} ms (median), the longest flush ${maxFlushMs.toFixed(1)} ms`,
    );
  }, 60_000);

  it('forgets a waiter whose wait timed out, and waits at shutdown for the records still expected', async () => {
    const store = open(stateDir());
    store.expect('long');
    for (let i = 0; i < 5; i += 1) await store.waitFor('long', 5);
    expect(store.waitersOf('long')).toBe(0);
    expect(store.expects('long')).toBe(true);
    // settle: resolves once every expected record is in, however long it may wait.
    store.expect('late');
    setTimeout(() => store.record(record('long')), 20);
    setTimeout(() => store.record(record('late')), 40);
    const begin = performance.now();
    await store.settle(60_000);
    expect(performance.now() - begin).toBeLessThan(30_000);
    expect(store.expects('late')).toBe(false);
    expect(store.invocation('late')).toBeDefined();
    // ... and gives up after its time for a record that never comes.
    store.expect('never');
    await store.settle(20);
    expect(store.expects('never')).toBe(true);
  });

  it('never reuses a line position, even after every line has expired', () => {
    const clock = { now: Date.parse('2026-01-01T00:00:00Z') };
    const dir = stateDir();
    const store = open(dir, { bounds: { maxAgeMs: 60_000 }, now: () => clock.now });
    const seen: StoredLine[] = [];
    store.follow('hello', (line) => seen.push(line));
    for (let i = 0; i < 5; i += 1) store.line({ function: 'hello', stream: 'stderr', line: `old ${i}` });
    store.flush();
    const last = seen.at(-1)!.seq;
    clock.now += 120_000;
    store.maintain();
    expect(store.lines({ function: 'hello', limit: 10 })).toEqual([]);
    store.line({ function: 'hello', stream: 'stderr', line: 'new' });
    store.flush();
    expect(seen.at(-1)).toMatchObject({ line: 'new' });
    expect(seen.at(-1)!.seq).toBeGreaterThan(last);
  });

  it('opens a database of schema version 1, keeping its lines and their positions', () => {
    const dir = stateDir();
    const file = join(dir, 'records', 'records.db');
    mkdirSync(join(dir, 'records'));
    const old = new Database(file);
    old.exec(`
      CREATE TABLE invocations (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, function TEXT NOT NULL, version TEXT NOT NULL, deployment TEXT,
        kind TEXT NOT NULL, started INTEGER NOT NULL, duration_ms REAL NOT NULL, outcome TEXT NOT NULL, status INTEGER, exit_code INTEGER,
        signal TEXT, bytes_in INTEGER NOT NULL, bytes_out INTEGER NOT NULL, cold INTEGER, instance TEXT, container TEXT);
      CREATE INDEX invocations_by_function_time ON invocations (function, started);
      CREATE TABLE lines (seq INTEGER PRIMARY KEY, time INTEGER NOT NULL, function TEXT NOT NULL, invocation_id TEXT, instance TEXT,
        stream TEXT NOT NULL, line TEXT NOT NULL, bytes INTEGER NOT NULL);
      CREATE INDEX lines_by_function_time ON lines (function, time);
      CREATE INDEX lines_by_invocation ON lines (invocation_id) WHERE invocation_id IS NOT NULL;
      CREATE TABLE usage (function TEXT PRIMARY KEY, line_bytes INTEGER NOT NULL DEFAULT 0, lines INTEGER NOT NULL DEFAULT 0,
        records INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
      INSERT INTO lines VALUES (7, ${Date.now()}, 'hello', 'a', NULL, 'stderr', 'from version 1', 174);
      INSERT INTO usage VALUES ('hello', 174, 1, 0);
      PRAGMA user_version = 1;`);
    old.close();
    const store = open(dir);
    const [kept] = store.invocation('a')?.lines ?? store.lines({ function: 'hello', limit: 10 });
    expect(kept).toMatchObject({ seq: 7, line: 'from version 1', invocationId: 'a' });
    expect(store.usage('hello')).toEqual({ lineBytes: 174, lines: 1, records: 0 });
    const seen: StoredLine[] = [];
    store.follow('hello', (line) => seen.push(line));
    store.line({ function: 'hello', stream: 'stderr', line: 'from version 2' });
    store.flush();
    expect(seen[0]!.seq).toBeGreaterThan(7);
    store.close();
    const check = new Database(file, { readonly: true });
    const sql = (check.prepare("SELECT sql FROM sqlite_master WHERE name = 'lines'").get() as { sql: string }).sql;
    const version = check.pragma('user_version', { simple: true });
    check.close();
    expect(sql).toContain('AUTOINCREMENT');
    expect(version).toBe(2);
  });
});
