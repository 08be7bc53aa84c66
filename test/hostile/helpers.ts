/**
 * @module
 * What every hostile test does besides its attack: a `hello` invocation runs alongside, every 50 ms,
 * and its latency is recorded; each test reports what it observed. The figures are printed and
 * collected in bench-results/hostile.json, from which docs/reliability.md's table is written.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Hostile functions: fork bombs, floods, escapes, probes. */
export const HOSTILE_DIR = fileURLToPath(new URL('./functions', import.meta.url));
const RESULTS = fileURLToPath(new URL('../../bench-results/hostile.json', import.meta.url));

/** The latency of the `hello` invocations that ran alongside an attack. */
export interface AlongsideFigures {
  count: number;
  failures: number;
  p50Ms: number;
  maxMs: number;
}

/**
 * Invokes `hello` every `intervalMs` until stopped. Resolves after `warmUpMs` of it, so that even a
 * short attack has a few measurements around it.
 */
export async function alongside(url: string, intervalMs = 50, warmUpMs = 300): Promise<{ stop(): Promise<AlongsideFigures> }> {
  const latencies: number[] = [];
  let failures = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const began = performance.now();
      try {
        const response = await fetch(`${url}/fn/hello`, { signal: AbortSignal.timeout(10_000) });
        const text = await response.text();
        if (response.status !== 200 || !text.startsWith('Hello')) failures++;
      } catch {
        failures++;
      }
      latencies.push(performance.now() - began);
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  })();
  await new Promise((resolve) => setTimeout(resolve, warmUpMs));
  return {
    async stop() {
      running = false;
      await loop;
      const sorted = [...latencies].sort((a, b) => a - b);
      const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
      return { count: sorted.length, failures, p50Ms: round(at(0.5)), maxMs: round(sorted.at(-1) ?? 0) };
    },
  };
}

/** Records what a row of the reliability table observed. */
export async function report(row: string, observed: Record<string, unknown>): Promise<void> {
  console.log(`hostile: ${row}: ${JSON.stringify(observed)}`);
  await mkdir(join(RESULTS, '..'), { recursive: true });
  const all = JSON.parse(await readFile(RESULTS, 'utf8').catch(() => '{}')) as Record<string, unknown>;
  all[row] = { ...observed, at: new Date().toISOString() };
  await writeFile(RESULTS, `${JSON.stringify(all, null, 2)}\n`);
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
