/**
 * @module
 * Load from wrk (Debian's), the load generator the side-by-side rows use: one thread, a fixed number of
 * connections, for a fixed time, every response checked against the expected body by
 * bench/wrk-check.lua. It is C and uses a fraction of a core, where a Node client would take the CPU
 * the servers compete for.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const SCRIPT = fileURLToPath(new URL('./wrk-check.lua', import.meta.url));
/** The same check, over several paths in turn (WrkLoad.paths). */
const ROTATE = fileURLToPath(new URL('./wrk-rotate.lua', import.meta.url));

/** What one wrk run measured; latencies in milliseconds. */
export interface WrkResult {
  connections: number;
  requests: number;
  durationMs: number;
  rps: number;
  /** Responses that were not 200 with the expected body, plus socket errors and timeouts. */
  errors: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** One load: `url`, answered by `expected`; a POST of `body` when there is one. */
export interface WrkLoad {
  url: string;
  expected: Buffer;
  body?: Buffer | undefined;
  /** GETs to these paths of `url`'s host, in turn (bench/wrk-rotate.lua), rather than to `url` itself; not with a body. */
  paths?: readonly string[] | undefined;
}

/** Runs wrk against `load` with `connections` connections for `durationMs`. */
export async function runWrk(load: WrkLoad, connections: number, durationMs: number): Promise<WrkResult> {
  if (load.paths && load.body) throw new Error('runWrk: a load that rotates over paths sends GETs, without a body');
  const dir = await mkdtemp(join(tmpdir(), 'fnix-wrk-'));
  try {
    const expected = join(dir, 'expected');
    await writeFile(expected, load.expected);
    const args = [
      `-t1`,
      `-c${connections}`,
      `-d${Math.max(1, Math.round(durationMs / 1000))}s`,
      '--timeout',
      '10s',
      '-s',
      load.paths ? ROTATE : SCRIPT,
      load.url,
      '--',
      expected,
      ...(load.paths ?? []),
    ];
    if (load.body) {
      const body = join(dir, 'body');
      await writeFile(body, load.body);
      args.push(body);
    }
    const { stdout } = await execa('wrk', args);
    const line = String(stdout).trim().split('\n').pop() ?? '';
    const r = JSON.parse(line) as { requests: number; durationUs: number; bad: number; errors: number; p50: number; p90: number; p99: number; max: number };
    const ranMs = r.durationUs / 1000;
    return {
      connections,
      requests: r.requests,
      durationMs: ranMs,
      rps: r.requests / (ranMs / 1000),
      errors: r.bad + r.errors,
      p50: r.p50 / 1000,
      p90: r.p90 / 1000,
      p99: r.p99 / 1000,
      max: r.max / 1000,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Rounds of the same load as one result: requests and time summed; p50 and p90 the median round's
 * (a round the machine disturbed moves them little), p99 and max the worst round's (tails are the target).
 */
export function combineRounds(rounds: WrkResult[]): WrkResult {
  const requests = rounds.reduce((sum, r) => sum + r.requests, 0);
  const durationMs = rounds.reduce((sum, r) => sum + r.durationMs, 0);
  const worst = (key: 'p99' | 'max') => Math.max(...rounds.map((r) => r[key]));
  const median = (key: 'p50' | 'p90') => {
    const values = rounds.map((r) => r[key]).sort((a, b) => a - b);
    const mid = values.length >> 1;
    return values.length % 2 ? values[mid]! : (values[mid - 1]! + values[mid]!) / 2;
  };
  return {
    connections: rounds[0]!.connections,
    requests,
    durationMs,
    rps: requests / (durationMs / 1000),
    errors: rounds.reduce((sum, r) => sum + r.errors, 0),
    p50: median('p50'),
    p90: median('p90'),
    p99: worst('p99'),
    max: worst('max'),
  };
}
