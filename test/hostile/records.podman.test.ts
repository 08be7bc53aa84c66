/**
 * @module
 * Floods of output against the records store, on a real gateway with small bounds: the hostile suite's
 * stderr flood (NUL bytes, no newline: cut into 4 KiB lines) and a flood of short lines (`yes`), run
 * for a while, several at once. The database file stays within what the bounds allow, the gateway
 * stays responsive (/healthz and `hello` answer throughout), and the lines over the rate budget are
 * counted in a `fnix` line.
 */
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LINE_OVERHEAD_BYTES, MAX_LINE_BYTES } from '../../runtime/records/bounds.ts';
import { EXAMPLES_DIR, functionsFrom, startTestGateway, TEST_TOKEN, type TestGateway } from '../helpers/gateway.ts';
import { alongside, HOSTILE_DIR } from './helpers.ts';

const KIB = 1024;
const BOUNDS = { maxLogBytes: 256 * KIB, maxAgeMs: 86_400_000, maxRecords: 50, ratePerSecond: 64 * KIB };
/** The WAL's size after a checkpoint (runtime/records/schema.ts). */
const WAL_BYTES = 1024 * KIB;
/** What one flush adds before it is trimmed: at most a second of each flooding function's rate (and the records). */
const FLUSH_BYTES = 4 * BOUNDS.ratePerSecond;
/** How long the floods run. */
const FLOOD_MS = 12_000;

let gateway: TestGateway;
let functionsDir: string;

beforeAll(async () => {
  functionsDir = await functionsFrom(EXAMPLES_DIR, HOSTILE_DIR);
  await mkdir(join(functionsDir, 'line-flood'));
  await writeFile(
    join(functionsDir, 'line-flood', 'function.json'),
    JSON.stringify({
      packages: ['busybox'],
      command: ['busybox', 'sh', '-c', '[ -z "$FNIX_DEPLOY_CHECK" ] || exit 0; exec busybox yes "a flooding line of text" >&2'],
    }),
  );
  gateway = await startTestGateway({ functionsDir, records: BOUNDS, maxOutput: 32 * 1024 * KIB, poolSize: 2 });
});
afterAll(async () => {
  await gateway?.close();
  await rm(functionsDir, { recursive: true, force: true });
});

const api = async (path: string) => (await (await fetch(`${gateway.url}/api${path}`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } })).json()) as any;

async function databaseBytes(): Promise<number> {
  const file = join(gateway.stateDir, 'records', 'records.db');
  const sizes = await Promise.all(
    [file, `${file}-wal`].map((path) =>
      stat(path).then(
        (s) => s.size,
        () => 0,
      ),
    ),
  );
  return sizes[0]! + sizes[1]!;
}

describe('floods of output against the records store', () => {
  it('keep the database within its bounds, the gateway responsive, and say how many lines were dropped', async () => {
    const hello = await alongside(gateway.url);
    const deadline = Date.now() + FLOOD_MS;
    let healthChecks = 0;
    let healthFailures = 0;
    let peakBytes = 0;
    const health = (async () => {
      while (Date.now() < deadline) {
        const response = await fetch(`${gateway.url}/healthz`, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
        healthChecks += 1;
        if (response?.status !== 200) healthFailures += 1;
        await response?.text();
        peakBytes = Math.max(peakBytes, await databaseBytes());
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    })();
    // Two of each flood at a time, each one until FNIX_MAX_OUTPUT kills it, again until the time is up.
    const outcomes: string[] = [];
    const flood = async (name: string) => {
      while (Date.now() < deadline) {
        const response = await fetch(`${gateway.url}/fn/${name}`);
        const id = response.headers.get('x-fnix-invocation-id');
        await response.arrayBuffer().catch(() => {});
        outcomes.push(`${name} ${id}`);
      }
    };
    await Promise.all([flood('stderr-flood'), flood('stderr-flood'), flood('line-flood'), flood('line-flood'), health]);
    const figures = await hello.stop();
    const finalBytes = await databaseBytes();
    const lines = (await api('/functions/line-flood/logs?limit=10000')).lines as Array<{ stream: string; line: string }>;
    const zeros = (await api('/functions/stderr-flood/logs?limit=10000')).lines as Array<{ stream: string; line: string }>;
    const kept = (list: Array<{ line: string }>) => list.reduce((sum, l) => sum + Buffer.byteLength(l.line) + LINE_OVERHEAD_BYTES, 0);
    const dropped = lines.filter((l) => l.stream === 'fnix').map((l) => Number(l.line.split(' ')[0]));
    // Each function with lines (the floods, hello) may hold its bound; the file adds the WAL and a flush.
    const allowed = 3 * BOUNDS.maxLogBytes + WAL_BYTES + FLUSH_BYTES + 512 * KIB;
    // Lines no longer than the cut: a flood of NULs has no newline, and is cut into 4 KiB lines.
    expect(zeros.every((l) => Buffer.byteLength(l.line) <= MAX_LINE_BYTES + ' [line cut]'.length)).toBe(true);
    console.log(
      `records flood: ${outcomes.length} flood invocations in ${FLOOD_MS} ms; database ${Math.round(peakBytes / KIB)} KiB at most, ${Math.round(finalBytes / KIB)} KiB at the end (allowed ${Math.round(allowed / KIB)} KiB); ` +
        `line-flood keeps ${lines.length} lines (${Math.round(kept(lines) / KIB)} KiB counted), ${dropped.reduce((a, b) => a + b, 0)} lines dropped in ${dropped.length} reports; ` +
        `stderr-flood keeps ${zeros.length} lines (${Math.round(kept(zeros) / KIB)} KiB); /healthz ${healthChecks} checks, ${healthFailures} failed; hello ${JSON.stringify(figures)}`,
    );
    expect(outcomes.length).toBeGreaterThanOrEqual(4);
    expect(peakBytes).toBeLessThanOrEqual(allowed);
    expect(finalBytes).toBeLessThanOrEqual(allowed);
    expect(kept(lines)).toBeLessThanOrEqual(BOUNDS.maxLogBytes);
    expect(kept(zeros)).toBeLessThanOrEqual(BOUNDS.maxLogBytes);
    expect(dropped.length).toBeGreaterThan(0);
    expect(dropped.every((n) => n > 0)).toBe(true);
    expect(healthFailures).toBe(0);
    expect(figures.failures).toBe(0);
    // Floods cost the gateway little: hello answered at a p50 of 56 ms in a run with this store, and of
    // 1.4 s before floods were dropped a chunk at a time (runtime/records/tap.ts).
    expect(figures.p50Ms).toBeLessThan(1000);
    // The records of the floods are kept too, within maxRecords, with the outcome the client got.
    const records = (await api('/functions/line-flood/invocations?limit=10000')).invocations as Array<{ outcome: string }>;
    expect(records.length).toBeGreaterThan(0);
    expect(records.length).toBeLessThanOrEqual(BOUNDS.maxRecords);
    expect(records.every((r) => r.outcome === 'OUTPUT_LIMIT')).toBe(true);
  });
});
