/**
 * @module
 * runtime/records/tap.ts: a stream's chunks become lines in the store; over the rate, whole chunks are
 * dropped and their lines counted, and the line torn by a drop is not kept.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LINE_OVERHEAD_BYTES } from '../../../runtime/records/bounds.ts';
import { RecordStore } from '../../../runtime/records/store.ts';
import { LineTap } from '../../../runtime/records/tap.ts';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function storeWithClock(ratePerSecond: number) {
  const clock = { now: 1_000_000 };
  const dir = mkdtempSync(join(tmpdir(), 'fnix-tap-'));
  const store = RecordStore.open({ stateDir: dir, bounds: { ratePerSecond }, now: () => clock.now, flushMs: 3_600_000, maintenanceMs: 3_600_000 });
  cleanups.push(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { store, clock };
}

describe('LineTap', () => {
  it('splits chunks into lines, a line across chunks included', () => {
    const { store } = storeWithClock(1 << 20);
    const tap = new LineTap(store, { function: 'f', invocationId: 'i', stream: 'stderr' });
    tap.write(Buffer.from('one\ntw'));
    tap.write(Buffer.from('o\nthree'));
    tap.end();
    expect(store.lines({ function: 'f', limit: 10 }).map((l) => [l.line, l.invocationId])).toEqual([
      ['one', 'i'],
      ['two', 'i'],
      ['three', 'i'],
    ]);
  });

  it('drops whole chunks over the rate, counts their lines, and keeps no torn line', () => {
    // Room for two lines of 10 bytes a second.
    const { store, clock } = storeWithClock(2 * (10 + LINE_OVERHEAD_BYTES));
    const tap = new LineTap(store, { function: 'f', stream: 'stderr' });
    tap.write(Buffer.from('aaaaaaaaaa\nbbbbbbbbbb\n'));
    // The budget is spent: these go whole, counted (5 newlines), including the start of a line ...
    tap.write(Buffer.from('c\nc\nc\nc\nc\npartial-'));
    clock.now += 1500;
    // ... whose end is skipped once the budget is back.
    tap.write(Buffer.from('rest-of-partial\nafter\n'));
    tap.end();
    const lines = store.lines({ function: 'f', limit: 10 });
    expect(lines.map((l) => [l.stream, l.line])).toEqual([
      ['stderr', 'aaaaaaaaaa'],
      ['stderr', 'bbbbbbbbbb'],
      ['fnix', expect.stringMatching(/^5 lines dropped/)],
      ['stderr', 'after'],
    ]);
  });
});
