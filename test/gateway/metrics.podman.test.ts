/**
 * @module
 * GET /metrics against a real gateway: the counters, histograms and gauges move as invocations run,
 * start cold, fail and queue.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { perInvocationExamples, FIXTURES_DIR, functionsFrom, startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { scrape } from '../helpers/metrics.ts';
import { waitUntil } from '../helpers/processes.ts';

let gateway: TestGateway;

beforeAll(async () => {
  // No warm pool and room for one container only: every start is cold, and a second request queues.
  gateway = await startTestGateway({
    functionsDir: await functionsFrom(await perInvocationExamples(), FIXTURES_DIR),
    poolSize: 0,
    maxContainers: 1,
    queueTimeoutMs: 700,
    maxBody: 1024,
  });
});
afterAll(async () => {
  await gateway?.close();
});

async function invoke(name: string): Promise<number> {
  const response = await fetch(`${gateway.url}/fn/${name}`, { method: 'POST', body: 'x' });
  await response.arrayBuffer();
  return response.status;
}

describe('GET /metrics', () => {
  it('exposes the fnix metrics and the process metrics in Prometheus text format', async () => {
    const metrics = await scrape(gateway.url);
    for (const name of [
      'fnix_pool_containers',
      'fnix_pool_max_containers',
      'fnix_queue_length',
      'fnix_sessions_open',
      'fnix_queue_wait_seconds_count',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_p99_seconds',
    ]) {
      expect(metrics.names, name).toContain(name);
    }
    expect(metrics.value('fnix_pool_max_containers')).toBe(1);
    expect(metrics.value('fnix_sessions_open')).toBe(0);
    // Building the functions folder at start counts as the first deployment.
    expect(metrics.value('fnix_deployments_total', { outcome: 'activated' })).toBe(1);
    expect(metrics.value('fnix_deployment_duration_seconds_count', { outcome: 'activated' })).toBe(1);
    expect(metrics.value('process_resident_memory_bytes')).toBeGreaterThan(10 * 1024 * 1024);
  });

  it('counts invocations by outcome, with durations, cold starts and their phases', async () => {
    const before = await scrape(gateway.url);
    expect(await invoke('hello')).toBe(200); // cold: no container exists
    expect(await invoke('hello')).toBe(200); // warm: the same container, idle
    expect(await invoke('hello')).toBe(200);
    expect(await invoke('exit-3')).toBe(502); // cold again: hello's container makes room
    const after = await scrape(gateway.url);
    const delta = (name: string, labels?: Record<string, string>) => after.value(name, labels) - before.value(name, labels);

    expect(delta('fnix_invocations_total', { function: 'hello', kind: 'http', outcome: 'OK' })).toBe(3);
    expect(delta('fnix_invocations_total', { function: 'exit-3', kind: 'http', outcome: 'FUNCTION_FAILED' })).toBe(1);
    expect(delta('fnix_invocation_duration_seconds_count', { function: 'hello', kind: 'http' })).toBe(3);
    expect(delta('fnix_invocation_duration_seconds_sum', { function: 'hello', kind: 'http' })).toBeGreaterThan(0);
    expect(delta('fnix_cold_starts_total', { function: 'hello' })).toBe(1);
    expect(delta('fnix_cold_starts_total', { function: 'exit-3' })).toBe(1);
    expect(delta('fnix_time_to_first_byte_seconds_count', { function: 'hello', start: 'cold' })).toBe(1);
    expect(delta('fnix_time_to_first_byte_seconds_count', { function: 'hello', start: 'warm' })).toBe(2);
    // exit-3 prints nothing to stdout, so it has no first byte.
    expect(delta('fnix_time_to_first_byte_seconds_count', { function: 'exit-3', start: 'cold' })).toBe(0);
    expect(delta('fnix_cold_start_phase_seconds_count', { phase: 'container_start' })).toBe(2);
    expect(delta('fnix_cold_start_phase_seconds_count', { phase: 'specialize' })).toBe(2);
    expect(delta('fnix_cold_start_phase_seconds_count', { phase: 'first_byte' })).toBe(1);
    // A container start takes tens of milliseconds at least; the phase histogram holds real times.
    expect(delta('fnix_cold_start_phase_seconds_sum', { phase: 'container_start' })).toBeGreaterThan(0.01);
    expect(delta('fnix_queue_wait_seconds_count')).toBe(4);
  });

  it('shows a queued request in the gauges, and counts its NO_CAPACITY', async () => {
    const before = await scrape(gateway.url);
    const holder = new AbortController();
    const forever = fetch(`${gateway.url}/fn/forever`, { signal: holder.signal }).catch(() => undefined);
    await waitUntil(async () => (await scrape(gateway.url)).value('fnix_pool_containers', { state: 'busy' }) === 1, 10_000, 'forever to run');

    const queued = invoke('hello');
    await waitUntil(async () => (await scrape(gateway.url)).value('fnix_queue_length') === 1, 5_000, 'hello to queue');
    expect(await queued).toBe(503);
    holder.abort();
    await forever;
    await waitUntil(
      async () => (await scrape(gateway.url)).value('fnix_invocations_total', { function: 'forever', kind: 'http', outcome: 'INVOCATION_ABORTED' }) === 1,
      5_000,
      'forever to be counted',
    );

    const after = await scrape(gateway.url);
    expect(after.value('fnix_queue_length')).toBe(0);
    // The refused request's wait counts too: that is when waits matter.
    expect(after.value('fnix_queue_wait_seconds_sum') - before.value('fnix_queue_wait_seconds_sum')).toBeGreaterThan(0.6);
    expect(after.value('fnix_invocations_total', { function: 'hello', kind: 'http', outcome: 'NO_CAPACITY' })).toBe(
      before.value('fnix_invocations_total', { function: 'hello', kind: 'http', outcome: 'NO_CAPACITY' }) + 1,
    );
  });

  it("counts the gateway's own verdict: a chunked body over the limit is BODY_TOO_LARGE, not an abort", async () => {
    const before = await scrape(gateway.url);
    const chunks = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 4; i += 1) controller.enqueue(new Uint8Array(1000));
        controller.close();
      },
    });
    const response = await fetch(`${gateway.url}/fn/echo`, { method: 'POST', body: chunks, duplex: 'half' } as RequestInit);
    expect(response.status).toBe(413);
    const labels = { function: 'echo', kind: 'http', outcome: 'BODY_TOO_LARGE' };
    await waitUntil(
      async () => (await scrape(gateway.url)).value('fnix_invocations_total', labels) === before.value('fnix_invocations_total', labels) + 1,
      5_000,
      'the 413 to be counted',
    );
    const after = await scrape(gateway.url);
    expect(after.value('fnix_invocations_total', { ...labels, outcome: 'INVOCATION_ABORTED' })).toBe(
      before.value('fnix_invocations_total', { ...labels, outcome: 'INVOCATION_ABORTED' }),
    );
    // Refused by its Content-Length alone, before any container: counted too.
    const declared = await fetch(`${gateway.url}/fn/echo`, { method: 'POST', body: new Uint8Array(4000) });
    expect(declared.status).toBe(413);
    const last = await scrape(gateway.url);
    expect(last.value('fnix_invocations_total', labels)).toBe(after.value('fnix_invocations_total', labels) + 1);
  });
});
