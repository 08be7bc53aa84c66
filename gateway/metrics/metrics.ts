/**
 * @module
 * The gateway's Prometheus metrics (prom-client), in a registry of their own so that several gateways
 * can live in one process (the tests start many). The runtime knows nothing of them: the gateway feeds
 * them from what the runner returns (instrument-runner.ts), from the pool's stats at scrape time, and
 * from the sessions and deployments it runs.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Invocation, InvocationResult } from '../../runtime/invocation/invocation.ts';
import type { PoolStats } from '../../runtime/pool/pool.ts';
import type { Runtime } from '../../runtime/runtime.ts';
import type { ServeInstances } from '../../runtime/serve/instances.ts';
import type { UnhandledCounts } from '../process-guards.ts';
import type { ConnectionStats } from '../server.ts';

/** What the process and its HTTP server count, outside any one gateway: read at each scrape. */
export interface EdgeStats {
  connections: () => ConnectionStats;
  /** Errors the process guards caught (gateway/process-guards.ts); absent where none are installed. */
  unhandled?: (() => UnhandledCounts) | undefined;
}

/** How an invocation was asked for. */
export type InvocationKind = 'http' | 'session';

/** What one finished invocation reports. */
export interface InvocationRecord {
  function: string;
  kind: InvocationKind;
  /** `OK`, or the error code it ended with. */
  outcome: string;
  /** From the request to the end of the process, in ms (queueing and a cold start included). */
  totalMs: number;
  /** From the request to the first stdout byte, in ms; undefined when there was none. */
  firstByteMs: number | undefined;
  cold: boolean;
}

/** Phases of a container's acquisition, in ms (runtime/pool/pool.ts Lease.timings). */
export interface AcquisitionTimings {
  waitMs: number;
  startMs: number;
  specializeMs: number;
}

/** Where the time of requests goes: from a millisecond to a 15-minute session. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900];
const COLD_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2, 5];
const DEPLOY_BUCKETS = [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600];

/** The gateway's metrics. */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly #invocations: Counter<'function' | 'kind' | 'outcome'>;
  readonly #duration: Histogram<'function' | 'kind'>;
  readonly #firstByte: Histogram<'function' | 'start'>;
  readonly #coldStarts: Counter<'function'>;
  readonly #coldPhases: Histogram<'phase'>;
  readonly #queueWait: Histogram;
  readonly #deployments: Counter<'outcome'>;
  readonly #deployDuration: Histogram<'outcome'>;
  readonly #sessions: Gauge;
  readonly #authFailures: Counter<'route'>;
  readonly #authRefused: Counter<'route'>;
  /** Outcomes the gateway decided itself (a 413, a bad CGI response), which the invocation cannot know. */
  readonly #outcomes = new WeakMap<object, string>();
  /** The gateway's answer to an invocation, while it is still being decided. */
  readonly #deciding = new WeakMap<object, Promise<void>>();

  /** `poolStats` and `edge` are read at each scrape for the pool, queue and connection gauges. */
  constructor(poolStats: () => PoolStats, edge?: EdgeStats) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.#invocations = new Counter({
      name: 'fnix_invocations_total',
      help: 'Invocations that ended, by function, kind (http or session) and outcome (OK or the error code)',
      labelNames: ['function', 'kind', 'outcome'],
      registers,
    });
    this.#duration = new Histogram({
      name: 'fnix_invocation_duration_seconds',
      help: 'Invocations that ran: from the request to the end of the process, queueing and cold start included',
      labelNames: ['function', 'kind'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#firstByte = new Histogram({
      name: 'fnix_time_to_first_byte_seconds',
      help: 'From the request to the first stdout byte, by whether the container was warm or cold',
      labelNames: ['function', 'start'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#coldStarts = new Counter({
      name: 'fnix_cold_starts_total',
      help: 'Invocations that found no warm container and started one',
      labelNames: ['function'],
      registers,
    });
    this.#coldPhases = new Histogram({
      name: 'fnix_cold_start_phase_seconds',
      help: 'Phases of a cold start: container_start (podman run to agent connected), specialize (function files and limits), first_byte (spawn to first stdout byte)',
      labelNames: ['phase'],
      buckets: COLD_BUCKETS,
      registers,
    });
    this.#queueWait = new Histogram({
      name: 'fnix_queue_wait_seconds',
      help: 'How long an invocation waited for a container because all were busy (0 for most); refused ones included',
      buckets: [0, 0.001, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.#deployments = new Counter({
      name: 'fnix_deployments_total',
      help: 'Deployments by outcome',
      labelNames: ['outcome'],
      registers,
    });
    this.#deployDuration = new Histogram({
      name: 'fnix_deployment_duration_seconds',
      help: 'How long a deployment took, from its start to activation or refusal',
      labelNames: ['outcome'],
      buckets: DEPLOY_BUCKETS,
      registers,
    });
    this.#sessions = new Gauge({ name: 'fnix_sessions_open', help: 'WebSocket sessions open now', registers });
    this.#authFailures = new Counter({
      name: 'fnix_auth_failures_total',
      help: 'Requests with a wrong token (git, api, metrics), or refused 401 by a private function (invoke, websocket, session), by route',
      labelNames: ['route'],
      registers,
    });
    this.#authRefused = new Counter({
      name: 'fnix_auth_refused_total',
      help: 'Requests refused with 429 because their client address failed too often, by route',
      labelNames: ['route'],
      registers,
    });
    if (edge) this.#edgeMetrics(edge, registers);
    new Gauge({
      name: 'fnix_pool_containers',
      help: 'Containers by state: warm (generic, ready), idle (specialised, free), busy, serving (held by a serve instance), starting',
      labelNames: ['state'],
      registers,
      collect() {
        const stats = poolStats();
        for (const state of ['warm', 'idle', 'busy', 'serving', 'starting'] as const) this.set({ state }, stats[state]);
      },
    });
    new Gauge({
      name: 'fnix_pool_max_containers',
      help: 'FNIX_MAX_CONTAINERS: containers of every kind at most',
      registers,
      collect() {
        this.set(poolStats().max);
      },
    });
    new Gauge({
      name: 'fnix_queue_length',
      help: 'Invocations waiting for a container now',
      registers,
      collect() {
        this.set(poolStats().queued);
      },
    });
  }

  /** The connection and unhandled-error metrics, read from `edge` at each scrape. */
  #edgeMetrics(edge: EdgeStats, registers: Registry[]): void {
    new Gauge({
      name: 'fnix_connections_open',
      help: 'Client connections open now',
      registers,
      collect() {
        this.set(edge.connections().open);
      },
    });
    new Gauge({
      name: 'fnix_connections_max',
      help: 'Client connections served at once (FNIX_MAX_CONNECTIONS, or the open-files limit less what fnix keeps)',
      registers,
      collect() {
        this.set(edge.connections().max);
      },
    });
    new Counter({
      name: 'fnix_connections_refused_total',
      help: 'Client connections closed as they arrived because the most allowed were open',
      registers,
      collect() {
        this.reset();
        this.inc(edge.connections().refused);
      },
    });
    const unhandled = edge.unhandled;
    if (unhandled) {
      new Counter({
        name: 'fnix_unhandled_errors_total',
        help: 'Bugs caught by the process guards: unhandled rejections and uncaught exceptions (each is logged with its stack)',
        labelNames: ['kind'],
        registers,
        collect() {
          this.reset();
          for (const [kind, count] of Object.entries(unhandled())) this.inc({ kind }, count);
        },
      });
    }
  }

  /** Metrics for a started runtime: its pool's gauges, and `edge`'s. */
  static forRuntime(runtime: Pick<Runtime, 'pool' | 'instances'>, edge?: EdgeStats): GatewayMetrics {
    const metrics = new GatewayMetrics(() => runtime.pool.stats(), edge);
    metrics.#instanceMetrics(runtime.instances);
    return metrics;
  }

  /** Serve instances: counts by function and state at each scrape, and each start and end as it happens. */
  #instanceMetrics(instances: ServeInstances): void {
    const registers = [this.registry];
    new Gauge({
      name: 'fnix_serve_instances',
      help: 'Serve function instances by function and state (starting, ready, stopping)',
      labelNames: ['function', 'state'],
      registers,
      collect() {
        this.reset();
        for (const { function: name, state, count } of instances.counts()) this.set({ function: name, state }, count);
      },
    });
    const starts = new Counter({
      name: 'fnix_serve_instance_starts_total',
      help: 'Serve instance starts by function and outcome (ready, or failed: did not become ready)',
      labelNames: ['function', 'outcome'],
      registers,
    });
    const startDuration = new Histogram({
      name: 'fnix_serve_instance_start_seconds',
      help: 'From asking for a container to the server answering its readyPath, by function',
      labelNames: ['function'],
      buckets: COLD_BUCKETS,
      registers,
    });
    const requests = new Histogram({
      name: 'fnix_serve_instance_requests',
      help: 'Requests one instance took in its life, observed when it ends, by function',
      labelNames: ['function'],
      buckets: [0, 1, 10, 100, 1000, 10_000, 100_000, 1_000_000],
      registers,
    });
    instances.observe({
      started: (fn, ms, ok) => {
        starts.inc({ function: fn.name, outcome: ok ? 'ready' : 'failed' });
        if (ok) startDuration.observe({ function: fn.name }, ms / 1000);
      },
      ended: (fn, count) => requests.observe({ function: fn.name }, count),
    });
  }

  /**
   * Sets the outcome counted for `invocation` when it ends, in place of its own: the gateway answered
   * with an error of its own (BODY_TOO_LARGE, FUNCTION_BAD_RESPONSE) and killed it.
   */
  overrideOutcome(invocation: object, code: string): void {
    this.#outcomes.set(invocation, code);
  }

  /**
   * Says that the gateway's answer to `invocation` is being decided until `decision` settles (a 413
   * waits for the whole body, which may come after the function has ended): its outcome is final only then.
   */
  deciding(invocation: object, decision: Promise<unknown>): void {
    this.#deciding.set(
      invocation,
      decision.then(
        () => undefined,
        () => undefined,
      ),
    );
  }

  /**
   * The invocation's result and the outcome the client got, once both are final: the invocation has
   * ended, the gateway has decided its answer, and the overrides made in the same turn as the end (a
   * session's status) are in. What is counted and what is logged both come from here.
   */
  async settled(invocation: Pick<Invocation, 'done'>): Promise<{ result: InvocationResult; outcome: string }> {
    const result = await invocation.done;
    await new Promise((resolve) => setImmediate(resolve));
    await this.#deciding.get(invocation);
    return { result, outcome: this.#outcomes.get(invocation) ?? result.error?.code ?? 'OK' };
  }

  /** Records an invocation that never started: refused (NO_CAPACITY, ...) after waiting `waitMs`. */
  invocationRefused(functionName: string, kind: InvocationKind, outcome: string, waitMs: number): void {
    this.#invocations.inc({ function: functionName, kind, outcome });
    this.#queueWait.observe(waitMs / 1000);
  }

  /** Records an invocation that ran and ended. */
  invocationEnded(record: InvocationRecord): void {
    this.#invocations.inc({ function: record.function, kind: record.kind, outcome: record.outcome });
    this.#duration.observe({ function: record.function, kind: record.kind }, record.totalMs / 1000);
    if (record.firstByteMs !== undefined) {
      this.#firstByte.observe({ function: record.function, start: record.cold ? 'cold' : 'warm' }, record.firstByteMs / 1000);
    }
  }

  /** Records how a container was acquired, when the acquisition succeeded. */
  containerAcquired(functionName: string, cold: boolean, timings: AcquisitionTimings): void {
    this.#queueWait.observe(timings.waitMs / 1000);
    if (!cold) return;
    this.#coldStarts.inc({ function: functionName });
    this.#coldPhases.observe({ phase: 'container_start' }, timings.startMs / 1000);
    this.#coldPhases.observe({ phase: 'specialize' }, timings.specializeMs / 1000);
  }

  /** Records the spawn-to-first-byte phase of a cold start. */
  coldFirstByte(ms: number): void {
    this.#coldPhases.observe({ phase: 'first_byte' }, ms / 1000);
  }

  /** A deployment finished: `activated`, `refused`, or `partial` (served with broken functions). */
  deploymentFinished(outcome: 'activated' | 'refused' | 'partial', durationMs: number): void {
    this.#deployments.inc({ outcome });
    this.#deployDuration.observe({ outcome }, durationMs / 1000);
  }

  /** A request to `route` came with a wrong token (git, api, metrics), or without a valid invoke key (invoke, websocket, session). */
  authFailed(route: string): void {
    this.#authFailures.inc({ route });
  }

  /** A request to `route` was refused unchecked (429): its address failed too often. */
  authRefused(route: string): void {
    this.#authRefused.inc({ route });
  }

  sessionOpened(): void {
    this.#sessions.inc();
  }

  sessionClosed(): void {
    this.#sessions.dec();
  }

  /** The exposition text and its content type. */
  async render(): Promise<{ body: string; contentType: string }> {
    return { body: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}
