/**
 * @module
 * runtime/records/recorder.ts: what a record says of the status the client got (the route's, the one it
 * noted, or the outcome's), the live deployment, and refusals, on a real store in a temporary folder.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Recorder } from '../../../runtime/records/recorder.ts';
import { RecordStore } from '../../../runtime/records/store.ts';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function recorder(deployment: () => string | undefined = () => 'dep-1') {
  const dir = mkdtempSync(join(tmpdir(), 'fnix-recorder-'));
  const store = RecordStore.open({ stateDir: dir, flushMs: 3_600_000, maintenanceMs: 3_600_000 });
  cleanups.push(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return new Recorder({ store, deployment, statusOf: (code) => ({ FUNCTION_FAILED: 502, NO_CAPACITY: 503 })[code] ?? 500 });
}

const fn = { name: 'hello', version: 'abc123' };

describe('Recorder', () => {
  it("takes the status noted by the route (a head already sent) over the outcome's", () => {
    const r = recorder();
    r.started('a');
    r.note('a', { status: 201, bytesIn: 5 });
    r.ended({ id: 'a', fn, kind: 'http', startedAt: Date.now(), durationMs: 3, outcome: 'FUNCTION_FAILED', exitCode: 1 });
    expect(r.store.invocation('a')?.invocation).toMatchObject({
      status: 201,
      bytesIn: 5,
      outcome: 'FUNCTION_FAILED',
      exitCode: 1,
      deployment: 'dep-1',
      version: 'abc123',
    });
  });

  it("gives an error outcome its status, OK 200, and a route's own status (null included) precedence", () => {
    const r = recorder(() => undefined);
    r.ended({ id: 'b', fn, kind: 'http', startedAt: Date.now(), durationMs: 1, outcome: 'FUNCTION_FAILED' });
    r.ended({ id: 'c', fn, kind: 'http', startedAt: Date.now(), durationMs: 1, outcome: 'OK' });
    r.ended({ id: 'd', fn, kind: 'websocket', startedAt: Date.now(), durationMs: 1, outcome: 'OK', status: null });
    expect([r.store.invocation('b'), r.store.invocation('c'), r.store.invocation('d')].map((found) => found?.invocation.status)).toEqual([502, 200, null]);
    expect(r.store.invocation('b')?.invocation.deployment).toBeNull();
  });

  it('records a refusal with a fresh id when the client was given none', () => {
    const r = recorder();
    r.refused({ fn, kind: 'session', outcome: 'NO_CAPACITY', startedAt: Date.now(), waitMs: 0 });
    const [record] = r.store.invocations({ function: 'hello', limit: 10 });
    expect(record).toMatchObject({ kind: 'session', outcome: 'NO_CAPACITY', status: 503, exitCode: null, cold: null });
    expect(record!.id).toMatch(/^[\w-]{21}$/);
  });

  it('ignores a note that comes after the record is written (a request body still counted when its response failed)', () => {
    const r = recorder();
    r.started('late');
    r.note('late', { status: 502 });
    r.ended({ id: 'late', fn, kind: 'http', startedAt: Date.now(), durationMs: 1, outcome: 'FUNCTION_FAILED' });
    r.note('late', { bytesIn: 100 });
    r.note('never-started', { bytesIn: 1 });
    expect(r.notes).toBe(0);
    expect(r.store.invocation('late')?.invocation).toMatchObject({ status: 502, bytesIn: 0 });
  });
});
