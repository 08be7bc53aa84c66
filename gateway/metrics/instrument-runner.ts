/**
 * @module
 * A Runner that records what passes through another one: acquisitions (queue wait, cold start phases),
 * and each invocation's outcome, duration and time to first byte. The HTTP route and WebSocket sessions
 * each get one, with their own `kind`. Given a recorder, it also writes each invocation's record (the
 * outcome the client got, as counted), refused ones included.
 */
import { FnixError } from '../../runtime/errors.ts';
import type { Recorder } from '../../runtime/records/recorder.ts';
import type { InvokeRequest, Runner, StartedInvocation } from '../../runtime/runner.ts';
import type { GatewayMetrics, InvocationKind } from './metrics.ts';

/** Wraps `runner` so that every invocation it runs is counted in `metrics` as `kind` (and recorded in `recorder`). */
export function instrumentRunner(runner: Runner, metrics: GatewayMetrics, kind: InvocationKind, recorder?: Recorder): Runner {
  return {
    async invoke(request: InvokeRequest): Promise<StartedInvocation> {
      const begin = performance.now();
      const startedAt = Date.now();
      recorder?.started(request.id);
      const name = request.fn.name;
      let started: StartedInvocation;
      try {
        started = await runner.invoke(request);
      } catch (error) {
        const outcome = error instanceof FnixError ? error.code : request.signal?.aborted ? 'INVOCATION_ABORTED' : 'INTERNAL_ERROR';
        metrics.invocationRefused(name, kind, outcome, performance.now() - begin);
        recorder?.refused({ id: request.id, fn: request.fn, kind, outcome, startedAt, waitMs: performance.now() - begin });
        throw error;
      }
      // The command was spawned just now: its first-output time counts from here.
      const spawnedAfterMs = performance.now() - begin;
      const { lease, invocation } = started;
      metrics.containerAcquired(name, lease.coldStart, lease.timings);
      void metrics.settled(invocation).then(({ result, outcome }) => {
        // Time to first byte is a measure of HTTP answers: a session's first output (a prompt, or a
        // program waiting for its user) says nothing about fnix.
        const firstOutputMs = kind === 'http' ? result.firstOutputMs : undefined;
        const firstByteMs = firstOutputMs === undefined ? undefined : spawnedAfterMs + firstOutputMs;
        if (lease.coldStart && firstOutputMs !== undefined) metrics.coldFirstByte(firstOutputMs);
        metrics.invocationEnded({
          function: name,
          kind,
          outcome,
          totalMs: spawnedAfterMs + result.durationMs,
          firstByteMs,
          cold: lease.coldStart,
        });
        recorder?.ended({
          id: request.id,
          fn: request.fn,
          kind,
          startedAt,
          durationMs: spawnedAfterMs + result.durationMs,
          outcome,
          exitCode: result.exitCode,
          signal: result.signal,
          bytesOut: result.stdoutBytes,
          cold: lease.coldStart,
          container: lease.container.name,
        });
      });
      return started;
    },
  };
}
