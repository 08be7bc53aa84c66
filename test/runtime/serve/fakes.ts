/**
 * @module
 * Fakes for the unit tests of runtime/serve/group.ts: a {@link FakeInstance} with the members the group
 * uses (state, inFlight, requests, startedAt, startMs, stopReason, ended, stop()), a {@link FakeStarter} whose starts
 * succeed, fail or wait as a test says, and a serve function version with the settings the group reads.
 */
import { vi } from 'vitest';
import { FnixError } from '../../../runtime/errors.ts';
import { SERVE_DEFAULTS, type ServeSettings } from '../../../runtime/functions/manifest.ts';
import type { FunctionVersion } from '../../../runtime/functions/version.ts';
import { InstanceGroup, type InstanceGroupOptions } from '../../../runtime/serve/group.ts';
import type { InstanceState, ServeInstance } from '../../../runtime/serve/instance.ts';

/** An instance as the group sees it: no container, no server. */
export class FakeInstance {
  static #started = 0;
  readonly id: string;
  readonly fn: FunctionVersion;
  readonly settings: ServeSettings;
  state: InstanceState = 'ready';
  inFlight = 0;
  requests = 0;
  readonly startedAt = new Date();
  startMs = 0;
  stopReason: string | undefined;
  /** Whether stop() ends it at once (as a quick kill does), or waits for {@link FakeInstance.end}. */
  endOnStop: boolean;
  readonly ended: Promise<FnixError>;
  readonly stops = vi.fn((_reason: string) => {});
  #end!: (error: FnixError) => void;

  constructor(fn: FunctionVersion, endOnStop: boolean) {
    FakeInstance.#started += 1;
    this.id = `i-fake${FakeInstance.#started}`;
    this.fn = fn;
    this.settings = fn.manifest.serve!;
    this.endOnStop = endOnStop;
    this.ended = new Promise((resolve) => {
      this.#end = resolve;
    });
  }

  stop(reason: string): void {
    this.stops(reason);
    if (this.state === 'stopped' || this.stopReason) return;
    this.stopReason = reason;
    this.state = 'stopping';
    if (this.endOnStop) this.end();
  }

  /** Ends it: stopped (SHUTTING_DOWN) or, unasked, as a server that exited (SERVER_EXITED). */
  end(): void {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    this.#end(
      this.stopReason
        ? new FnixError('SHUTTING_DOWN', `instance ${this.id} was stopped: ${this.stopReason}`)
        : new FnixError('SERVER_EXITED', `instance ${this.id} exited with code 1`),
    );
  }
}

/** The fake behind a {@link ServeInstance} the group handed out. */
export function fake(instance: ServeInstance): FakeInstance {
  return instance as unknown as FakeInstance;
}

/** How a start goes: at once with an instance, at once with an error, or when the test says. */
export type Outcome = 'start' | 'fail' | 'hold';

/** One call of start. */
export interface Start {
  /** The instance, once started. */
  instance: FakeInstance | undefined;
  ready(): FakeInstance;
  fail(error?: unknown): void;
}

/** Starts fake instances, and records the starts. */
export class FakeStarter {
  readonly starts: Start[] = [];
  /** How the next starts go, in turn; then {@link FakeStarter.outcome}. */
  readonly outcomes: Outcome[] = [];
  outcome: Outcome = 'start';
  endOnStop = true;

  readonly start = (fn: FunctionVersion): Promise<ServeInstance> => {
    let resolve!: (instance: ServeInstance) => void;
    let reject!: (error: unknown) => void;
    const promise = new Promise<ServeInstance>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const start: Start = {
      instance: undefined,
      ready: () => {
        start.instance = new FakeInstance(fn, this.endOnStop);
        resolve(start.instance as unknown as ServeInstance);
        return start.instance;
      },
      fail: (error = new FnixError('SERVER_NOT_READY', `function '${fn.name}' did not start: it exited with code 3`)) => reject(error),
    };
    this.starts.push(start);
    const outcome = this.outcomes.shift() ?? this.outcome;
    if (outcome === 'start') start.ready();
    else if (outcome === 'fail') start.fail();
    return promise;
  };

  /** The instances started, in order. */
  get instances(): FakeInstance[] {
    return this.starts.flatMap((s) => (s.instance ? [s.instance] : []));
  }

  /** The starts still waiting for the test. */
  get held(): Start[] {
    return this.starts.filter((s) => !s.instance);
  }
}

/** A serve function version with only what the group reads: name, version, key and manifest.serve. */
export function serveVersion(name: string, serve: Partial<ServeSettings> = {}, version = '1'): FunctionVersion {
  const fn = {
    name,
    version,
    key: `${name}@${version}`,
    manifest: { serve: { ...SERVE_DEFAULTS, port: 8080, ...serve } },
  };
  return fn as unknown as FunctionVersion;
}

/** A group of `fn` over a new {@link FakeStarter}. */
export function makeGroup(serve: Partial<ServeSettings> = {}, options: Partial<InstanceGroupOptions> = {}) {
  const starter = new FakeStarter();
  const onEnded = vi.fn((_instance: ServeInstance) => {});
  const onStartFailed = vi.fn((_error: FnixError) => {});
  const fn = serveVersion('web', serve);
  const group = new InstanceGroup({ fn, start: starter.start, queueTimeoutMs: 10_000, maxQueue: 100, onEnded, onStartFailed, ...options });
  return { group, starter, fn, onEnded, onStartFailed };
}

/**
 * What `acquire()` came to: the slot, or the error, whether it was thrown or a rejection (the group's
 * acquire throws NO_CAPACITY synchronously when the line is full).
 */
export function outcomeOf<T>(call: () => Promise<T>): Promise<T | unknown> {
  return new Promise<T>((resolve) => resolve(call())).catch((error: unknown) => error);
}
