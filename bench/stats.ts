/**
 * @module
 * Latency samples to the figures the benchmark reports.
 */

/** One scenario's figures; latencies in ms. */
export interface Summary {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** Completed requests per second of wall time. */
  rps: number;
  errors: number;
}

/** Summarises `samples` (ms) taken over `wallMs` with `errors` failures. */
export function summarize(samples: number[], wallMs: number, errors: number): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  // Nearest-rank percentiles: p99 of 100 samples is the 99th, never an interpolation below the data.
  const rank = (q: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!);
  return {
    n: samples.length,
    p50: rank(0.5),
    p90: rank(0.9),
    p99: rank(0.99),
    max: sorted.length === 0 ? NaN : sorted[sorted.length - 1]!,
    rps: wallMs > 0 ? (samples.length / wallMs) * 1000 : 0,
    errors,
  };
}

/**
 * Runs `once` with `concurrency` workers until `requests` have completed (or `durationMs` has passed),
 * timing each. `once` throws on a wrong answer, which counts as an error.
 */
export async function measure(once: () => Promise<unknown>, options: { concurrency: number; requests?: number; durationMs?: number }): Promise<Summary> {
  const samples: number[] = [];
  let errors = 0;
  let started = 0;
  const begin = performance.now();
  const more = () => (options.requests !== undefined ? started < options.requests : performance.now() - begin < (options.durationMs ?? 0));
  const worker = async () => {
    while (more()) {
      started += 1;
      const t0 = performance.now();
      try {
        await once();
        samples.push(performance.now() - t0);
      } catch {
        errors += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return summarize(samples, performance.now() - begin, errors);
}
