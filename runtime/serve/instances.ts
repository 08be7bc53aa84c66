/**
 * @module
 * Every serve function's instances, by version (runtime/serve/group.ts does one version's). A
 * deployment warms the versions it is about to serve (their minInstances ready before the switch),
 * then says which are served: the others drain, finishing what they hold and then stopping. A push's
 * check starts one instance on its own, to see the server become ready, and stops it.
 */
import { customAlphabet } from 'nanoid';
import { FnixError } from '../errors.ts';
import type { FunctionVersion } from '../functions/version.ts';
import type { Logger } from '../log.ts';
import type { Pool } from '../pool/pool.ts';
import { MAX_QUEUE } from '../pool/options.ts';
import { InstanceGroup, type Slot } from './group.ts';
import { type InstanceOutput, type InstanceState, ServeInstance } from './instance.ts';
import type { SecretValues } from '../secrets/store.ts';

export type { Slot };

/** Instance ids: `i-` and 8 characters. */
const instanceSuffix = customAlphabet('0123456789abcdefghijkmnopqrstuvwxyz', 8);

/** One instance, as the API and /healthz show it. */
export interface InstanceInfo {
  id: string;
  version: string;
  state: InstanceState;
  inFlight: number;
  requests: number;
  startedAt: string;
  startMs: number;
  container: string;
}

/** What the metrics are told. */
export interface InstanceEvents {
  /** An instance became ready (`ok`) or failed to, after `ms`. */
  started(fn: FunctionVersion, ms: number, ok: boolean): void;
  /** An instance ended, having taken `requests` requests. */
  ended(fn: FunctionVersion, requests: number): void;
}

/** Options for {@link ServeInstances}. */
export interface ServeInstancesOptions {
  pool: Pool;
  log: Logger;
  /** How long a request may wait for a free instance (FNIX_QUEUE_TIMEOUT_MS). */
  queueTimeoutMs: number;
  /** Requests that may wait per version. @default MAX_QUEUE */
  maxQueue?: number;
  /** Where the secrets serve functions declare are read, at each instance's start. @default none */
  secrets?: SecretValues | undefined;
}

/** The serve functions' instances. */
export class ServeInstances {
  readonly #options: ServeInstancesOptions;
  readonly #groups = new Map<string, InstanceGroup>();
  readonly #draining = new Set<InstanceGroup>();
  /** Instances of checks, which belong to no group. */
  readonly #checking = new Set<ServeInstance>();
  /** Groups a restart is warming, which take over from the served ones once ready. */
  readonly #warming = new Set<InstanceGroup>();
  #events: InstanceEvents | undefined;
  #output: InstanceOutput | undefined;
  #closed = false;

  constructor(options: ServeInstancesOptions) {
    this.#options = options;
  }

  /** Says where instance starts and ends are reported (the gateway's metrics). */
  observe(events: InstanceEvents): void {
    this.#events = events;
  }

  /** Says where every instance's output lines go besides the log (the gateway's records store). */
  output(sink: InstanceOutput): void {
    this.#output = sink;
  }

  /** A slot in an instance of `fn` (see InstanceGroup.acquire). */
  acquire(fn: FunctionVersion, signal?: AbortSignal): Promise<Slot> {
    if (this.#closed) return Promise.reject(new FnixError('SHUTTING_DOWN', 'fnix is shutting down'));
    return this.#group(fn).acquire(signal);
  }

  /** A slot in an instance of `fn` if one is free now (no waiting, no start); undefined otherwise. */
  tryAcquire(fn: FunctionVersion): Slot | undefined {
    if (this.#closed) return undefined;
    return this.#group(fn).tryAcquire();
  }

  /** Starts the serve versions among `versions` up to their minInstances, and waits until they are ready. */
  async warm(versions: readonly FunctionVersion[]): Promise<void> {
    // A version served again while it still drains (a rollback) gets a group of its own: the draining
    // one finishes what it holds and goes.
    await Promise.all(versions.filter((fn) => fn.manifest.serve).map((fn) => this.#group(fn, { forServing: true }).warm()));
  }

  /** Serves exactly the versions `keys` from now on: every other version's instances drain and stop. */
  serve(keys: Iterable<string>): void {
    const served = new Set(keys);
    for (const [key, group] of this.#groups) {
      if (served.has(key)) continue;
      this.#groups.delete(key);
      this.#drain(group);
    }
  }

  /** Lets `group` finish what it holds, then stop. */
  #drain(group: InstanceGroup): void {
    this.#draining.add(group);
    void group.drain().then(() => this.#draining.delete(group));
  }

  /**
   * Restarts the served instances of the functions `functionNames` (a secret they declare changed),
   * gracefully: a new group of each version is warmed to its minInstances first, then takes the
   * requests, while the old instances finish what they hold and stop. When the new instances cannot
   * start, the old ones stop all the same (a rotated secret may be a revoked one) and the new group
   * keeps retrying, as after any failed start. Resolves, once the switch is made, with the names of
   * the functions restarted: those with a served serve version.
   */
  async restart(functionNames: Iterable<string>, reason: string): Promise<string[]> {
    const names = new Set(functionNames);
    const old = [...this.#groups].filter(([, group]) => names.has(group.fn.name));
    await Promise.all(
      old.map(async ([key, group]) => {
        const fresh = this.#makeGroup(group.fn);
        this.#warming.add(fresh);
        await fresh.warm().catch((error: unknown) =>
          this.#options.log.error('restarted instances did not start; the old ones stop all the same', {
            function: group.fn.name,
            reason,
            error: (error as Error).message,
          }),
        );
        this.#warming.delete(fresh);
        if (this.#closed || this.#groups.get(key) !== group) {
          // Replaced meanwhile (a deployment, another restart) or shutting down: the fresh group goes.
          this.#drain(fresh);
          return;
        }
        this.#groups.set(key, fresh);
        this.#drain(group);
        this.#options.log.info('instances restarted', { function: group.fn.name, reason });
      }),
    );
    return [...new Set(old.map(([, group]) => group.fn.name))];
  }

  /**
   * Starts one instance of `fn` on its own and stops it once it is ready: a push's check. Resolves
   * with what went wrong (SERVER_NOT_READY's message, with the server's stderr), or undefined.
   */
  async check(fn: FunctionVersion): Promise<string | undefined> {
    let instance: ServeInstance | undefined;
    try {
      instance = await this.#startInstance(fn, (started) => this.#checking.add(started));
      return undefined;
    } catch (error) {
      return error instanceof FnixError ? error.message : String(error);
    } finally {
      if (instance) {
        instance.stop('its check is over');
        await instance.ended;
        this.#checking.delete(instance);
      }
    }
  }

  /** The instances of function `name` (every version: the served one, and any still draining). */
  list(name: string): InstanceInfo[] {
    return this.#allGroups()
      .filter((group) => group.fn.name === name)
      .flatMap((group) => [...group.instances].map((instance) => describe(instance)));
  }

  /** Instance counts by function and state, for the metrics and /healthz. */
  counts(): Array<{ function: string; state: InstanceState; count: number }> {
    const counts = new Map<string, { function: string; state: InstanceState; count: number }>();
    const add = (name: string, state: InstanceState) => {
      const key = `${name}\0${state}`;
      const entry = counts.get(key) ?? { function: name, state, count: 0 };
      entry.count += 1;
      counts.set(key, entry);
    };
    for (const group of this.#allGroups()) {
      for (const instance of group.instances) add(group.fn.name, instance.state);
      for (let i = 0; i < group.starting; i += 1) add(group.fn.name, 'starting');
    }
    return [...counts.values()];
  }

  /**
   * Refuses new requests, lets those under way finish for up to `graceMs`, then stops every instance
   * and waits until they are gone.
   */
  async close(graceMs = 0): Promise<void> {
    this.#closed = true;
    const error = new FnixError('SHUTTING_DOWN', 'fnix is shutting down');
    const groups = this.#allGroups();
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
    });
    await Promise.race([Promise.all(groups.map((group) => group.drain())), grace]);
    clearTimeout(timer);
    const ended = groups.flatMap((group) => [...group.instances].map((instance) => instance.ended));
    for (const group of groups) group.stopAll('fnix is shutting down', error);
    for (const instance of this.#checking) instance.stop('fnix is shutting down');
    await Promise.all([...ended, ...[...this.#checking].map((instance) => instance.ended)]);
  }

  #allGroups(): InstanceGroup[] {
    return [...this.#groups.values(), ...this.#warming, ...this.#draining];
  }

  #group(fn: FunctionVersion, { forServing = false } = {}): InstanceGroup {
    let group = this.#groups.get(fn.key);
    // A version no longer served keeps its draining group: its requests go there, never to a new one.
    if (!group && !forServing) group = [...this.#draining].find((draining) => draining.fn.key === fn.key);
    if (!group) {
      group = this.#makeGroup(fn);
      this.#groups.set(fn.key, group);
    }
    return group;
  }

  #makeGroup(fn: FunctionVersion): InstanceGroup {
    return new InstanceGroup({
      fn,
      start: (version) => this.#startInstance(version),
      queueTimeoutMs: this.#options.queueTimeoutMs,
      maxQueue: this.#options.maxQueue ?? MAX_QUEUE,
      onEnded: (instance) => this.#ended(instance),
      onStartFailed: (error) => this.#options.log.error('an instance did not start', { function: fn.name, code: error.code, error: error.message }),
    });
  }

  async #startInstance(fn: FunctionVersion, onStarted?: (instance: ServeInstance) => void): Promise<ServeInstance> {
    const id = `i-${instanceSuffix()}`;
    const begin = performance.now();
    try {
      const instance = await ServeInstance.start({
        pool: this.#options.pool,
        fn,
        id,
        log: this.#options.log,
        secrets: this.#options.secrets,
        output: this.#output,
      });
      onStarted?.(instance);
      this.#events?.started(fn, instance.startMs, true);
      this.#options.log.info('instance ready', { function: fn.name, instance: id, container: instance.containerName, ms: instance.startMs.toFixed(1) });
      return instance;
    } catch (error) {
      this.#events?.started(fn, performance.now() - begin, false);
      throw error;
    }
  }

  #ended(instance: ServeInstance): void {
    this.#events?.ended(instance.fn, instance.requests);
    const error = instance.endError;
    const fields = { function: instance.fn.name, instance: instance.id, requests: instance.requests };
    if (instance.stopReason) this.#options.log.info('instance stopped', { ...fields, reason: instance.stopReason });
    else this.#options.log.warn('instance ended', { ...fields, code: error?.code, error: error?.message });
  }
}

function describe(instance: ServeInstance): InstanceInfo {
  return {
    id: instance.id,
    version: instance.fn.version,
    state: instance.state,
    inFlight: instance.inFlight,
    requests: instance.requests,
    startedAt: instance.startedAt.toISOString(),
    startMs: Math.round(instance.startMs),
    container: instance.containerName,
  };
}
