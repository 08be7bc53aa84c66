/**
 * @module
 * One instance of a serve function: a container of one function version, running the function's
 * command as a long-lived HTTP server on the container's own loopback. It takes a container from the
 * pool for its whole life (so instances count under FNIX_MAX_CONTAINERS), starts the command with
 * PORT set, polls `readyPath` until the server answers, and then hands out connections to it through
 * the agent's relays (runtime/container/relay.ts). Its stdout and stderr go to the log.
 *
 * The container is never reused: when the server exits, or the instance is stopped, the container goes.
 */
import type { Socket } from 'node:net';
import type { Container } from '../container/container.ts';
import type { RelayHub } from '../container/relay.ts';
import { RelayOpenError } from '../container/relay.ts';
import { FnixError } from '../errors.ts';
import type { ServeSettings } from '../functions/manifest.ts';
import type { FunctionVersion } from '../functions/version.ts';
import type { Invocation, InvocationResult } from '../invocation/invocation.ts';
import type { Logger } from '../log.ts';
import type { Pool } from '../pool/pool.ts';
import { FUNCTION_DIR, functionEnv } from '../runner.ts';
import { deliverSecrets } from '../secrets/delivery.ts';
import { secretMask } from '../secrets/mask.ts';
import type { SecretValues } from '../secrets/store.ts';
import { ServerLog } from './server-log.ts';

/** A line a serve instance wrote, for the records store; `invocationId` is that of the one request it serves, if known. */
export interface InstanceOutputLine {
  function: string;
  instance: string;
  stream: 'stdout' | 'stderr';
  line: string;
  invocationId: string | undefined;
}

/** Told every line of every instance's stdout and stderr. */
export type InstanceOutput = (line: InstanceOutputLine) => void;
import { probeReady } from './probe.ts';

/** Where an instance is in its life. */
export type InstanceState = 'starting' | 'ready' | 'stopping' | 'stopped';

/** How long opening a connection to a ready server may take before the request fails. */
export const CONNECT_TIMEOUT_MS = 5000;

/** What {@link ServeInstance.start} needs. */
export interface InstanceStartOptions {
  pool: Pool;
  fn: FunctionVersion;
  /** The instance's id: in its log lines, FNIX_INSTANCE_ID and the API. */
  id: string;
  log: Logger;
  /** Where the secrets the function declares are read, at the start (runtime/secrets/). @default none */
  secrets?: SecretValues | undefined;
  /** Aborting it gives up the start (the container goes). */
  signal?: AbortSignal | undefined;
  /** Where its output lines go besides the log (the records store). @default none */
  output?: InstanceOutput | undefined;
}

/** A serve function's settings; only versions that have them get instances. */
export function serveSettings(fn: FunctionVersion): ServeSettings {
  const { serve } = fn.manifest;
  if (!serve) throw new TypeError(`function '${fn.name}' is not a serve function`);
  return serve;
}

/** How long after a request at concurrency 1 its instance's output lines are still its own. */
export const LATE_OUTPUT_MS = 250;

/** One running server of one function version. */
export class ServeInstance {
  readonly id: string;
  readonly fn: FunctionVersion;
  readonly settings: ServeSettings;
  state: InstanceState = 'starting';
  /** Requests (and WebSockets) it is serving now. */
  inFlight = 0;
  /** Requests it has taken, in all. */
  requests = 0;
  readonly startedAt = new Date();
  /** From the request for a container to the first ready answer, in ms. */
  startMs = 0;
  /** Resolves, once, with why it ended: SERVER_EXITED, FUNCTION_OOM, or SHUTTING_DOWN when it was stopped. */
  readonly ended: Promise<FnixError>;

  readonly #container: Container;
  readonly #hub: RelayHub;
  readonly #server: Invocation;
  #stopReason: string | undefined;
  #endError: FnixError | undefined;

  /** The request an instance of concurrency 1 serves, or served last, and when that one ended (see {@link requestOfOutput}). */
  #request: { id: string; endedAt: number | undefined } | undefined;

  /** Says that the gateway hands request `id` to this instance, at concurrency 1: its output lines are then that request's. */
  beginRequest(id: string): void {
    this.#request = { id, endedAt: undefined };
  }

  /** Says that request `id` has ended. */
  endRequest(id: string): void {
    if (this.#request?.id === id) this.#request.endedAt = performance.now();
  }

  /**
   * The request an output line written now belongs to: the one being served, or the one that ended
   * under {@link LATE_OUTPUT_MS} ago (what the server wrote while answering comes through the agent, and
   * may arrive just after the response). Undefined when there is none, and always at concurrency above 1.
   */
  requestOfOutput(): string | undefined {
    const request = this.#request;
    if (!request) return undefined;
    return request.endedAt === undefined || performance.now() - request.endedAt < LATE_OUTPUT_MS ? request.id : undefined;
  }

  private constructor(fn: FunctionVersion, id: string, container: Container, hub: RelayHub, server: Invocation) {
    this.fn = fn;
    this.id = id;
    this.settings = serveSettings(fn);
    this.#container = container;
    this.#hub = hub;
    this.#server = server;
    this.ended = server.done.then((result) => {
      this.state = 'stopped';
      this.#endError = this.#describeEnd(result);
      return this.#endError;
    });
  }

  /**
   * Starts an instance and resolves once its server answers `readyPath`. Throws the pool's errors
   * (NO_CAPACITY, CONTAINER_START_FAILED, SHUTTING_DOWN), or SERVER_NOT_READY with the server's stderr.
   */
  static async start(options: InstanceStartOptions): Promise<ServeInstance> {
    const { pool, fn, id, log } = options;
    const settings = serveSettings(fn);
    const begin = performance.now();
    // Read at the start, before a container is taken: the server keeps them for its life, and a
    // rotation restarts it (ServeInstances.restart).
    const secrets = deliverSecrets(fn, options.secrets);
    const lease = await pool.acquire(fn, { signal: options.signal }).catch((error: unknown) => {
      for (const file of secrets.files) file.data.fill(0);
      throw error;
    });
    const { container } = lease;
    pool.hold(container);
    let hub: RelayHub;
    let started: ReturnType<Container['invoke']>;
    // Copies of the values, to mask them in its log and records lines (runtime/secrets/mask.ts).
    const mask = secretMask(secrets.files);
    try {
      hub = await container.openRelays();
      started = container.invoke({
        id,
        functionName: fn.name,
        spawn: {
          argv: fn.manifest.command,
          env: functionEnv(fn, {}, { ...secrets.env, PORT: String(settings.port), FNIX_INSTANCE_ID: id }),
          cwd: FUNCTION_DIR,
          files: secrets.files,
        },
        timeoutMs: undefined,
        maxOutputBytes: Number.POSITIVE_INFINITY,
        mask,
      });
    } catch (error) {
      mask.wipe();
      pool.release(container, false);
      throw new FnixError('CONTAINER_START_FAILED', `preparing an instance of '${fn.name}' failed: ${(error as Error).message}`, { cause: error });
    } finally {
      for (const file of secrets.files) file.data.fill(0);
    }
    const { invocation, released } = started;
    // A serve container is never reused: whatever the server left behind stays with it.
    void released.then(() => pool.release(container, false));
    invocation.stdin.end();
    // The sink reads the instance once it exists: lines before that (at the server's start) have no request.
    let made: ServeInstance | undefined;
    const output = options.output;
    const sink =
      output &&
      ((stream: 'stdout' | 'stderr', line: string) => output({ function: fn.name, instance: id, stream, line, invocationId: made?.requestOfOutput() }));
    const serverLog = new ServerLog({ log, prefix: `[${fn.name} ${id}]`, sink, mask: (line) => invocation.mask(line) });
    serverLog.attach(invocation.stdout, 'stdout');
    serverLog.attach(invocation.stderr, 'stderr');
    const instance = new ServeInstance(fn, id, container, hub, invocation);
    made = instance;
    // From the server's start: the wait for a container is the pool's (FNIX_QUEUE_TIMEOUT_MS).
    const deadline = performance.now() + settings.startTimeoutMs;
    const onAbort = () => instance.stop('its start was given up');
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await probeReady({
        open: (timeoutMs) => hub.open(settings.port, timeoutMs),
        path: settings.readyPath,
        deadline,
        gone: instance.ended.then(() => undefined),
      });
    } catch (error) {
      const exitedFirst = invocation.finished;
      instance.stop('it did not become ready');
      throw notReady(fn, settings, error, exitedFirst, await invocation.done);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
    instance.startMs = performance.now() - begin;
    instance.state = 'ready';
    return instance;
  }

  /** The container it runs in. */
  get containerName(): string {
    return this.#container.name;
  }

  /** Why it ended, once it has. */
  get endError(): FnixError | undefined {
    return this.#endError;
  }

  /**
   * A connection to the server. Throws the instance's end (SERVER_EXITED, FUNCTION_OOM) when it has
   * ended, or FUNCTION_BAD_RESPONSE when the server no longer accepts connections.
   */
  async connect(): Promise<Socket> {
    if (this.#endError) throw this.#endError;
    try {
      return await this.#hub.open(this.settings.port, CONNECT_TIMEOUT_MS);
    } catch (error) {
      if (this.#endError) throw this.#endError;
      const reason = error instanceof RelayOpenError ? error.message : String(error);
      throw new FnixError('FUNCTION_BAD_RESPONSE', `function '${this.fn.name}' took no connection on port ${this.settings.port} (${reason})`, {
        details: { function: this.fn.name, instance: this.id },
        cause: error,
      });
    }
  }

  /**
   * The error a request that lost its connection should get: the instance's end when it ends within
   * `waitMs` (a crash closes the connections just before the agent reports the exit), else undefined.
   */
  async endWithin(waitMs: number): Promise<FnixError | undefined> {
    if (this.#endError) return this.#endError;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), waitMs);
    });
    const error = await Promise.race([this.ended, late]);
    clearTimeout(timer);
    return error;
  }

  /** Stops the server and everything in its container; `reason` is logged with the end. */
  stop(reason: string): void {
    if (this.state === 'stopped' || this.#stopReason) return;
    this.#stopReason = reason;
    this.state = 'stopping';
    this.#server.kill('shutdown');
  }

  /** Why it was stopped, when fnix stopped it. */
  get stopReason(): string | undefined {
    return this.#stopReason;
  }

  #describeEnd(result: InvocationResult): FnixError {
    const name = `function '${this.fn.name}'`;
    const details = { function: this.fn.name, instance: this.id, ...exitDetails(result) };
    if (this.#stopReason) return new FnixError('SHUTTING_DOWN', `${name}: instance ${this.id} was stopped: ${this.#stopReason}`, { details });
    if (result.oomKilled) {
      return new FnixError(
        'FUNCTION_OOM',
        `${name}: its server ran out of memory: it used more than its memoryMb of ${this.fn.manifest.memoryMb} MiB and was killed`,
        {
          details,
        },
      );
    }
    return new FnixError('SERVER_EXITED', `${name}: its server ${describeExit(result)}; the instance is replaced`, { details });
  }
}

function exitDetails(result: InvocationResult): Record<string, unknown> {
  const details: Record<string, unknown> = {};
  if (result.exitCode !== undefined) details['exitCode'] = result.exitCode;
  if (result.signal !== undefined) details['signal'] = result.signal;
  if (result.stderrTail) details['stderr'] = result.stderrTail;
  if (result.pidsLimitHit) details['pidsLimitHit'] = true;
  return details;
}

function describeExit(result: InvocationResult): string {
  if (result.reason === 'lost') return 'lost its container';
  if (result.signal !== undefined) return `was killed by ${result.signal}${result.pidsLimitHit ? ' (it reached its pids limit)' : ''}`;
  return `exited with code ${result.exitCode}`;
}

/** SERVER_NOT_READY for a start that failed: the probe's last problem, and the server's own end and stderr. */
function notReady(fn: FunctionVersion, settings: ServeSettings, error: unknown, exited: boolean, result: InvocationResult): FnixError {
  const stderr = result.stderrTail.trim();
  const tail = stderr ? `; its stderr ends with: ${stderr.split('\n').slice(-5).join(' | ')}` : '';
  const name = `function '${fn.name}'`;
  const why = exited
    ? `its server ${result.oomKilled ? `ran out of memory (memoryMb ${fn.manifest.memoryMb})` : describeExit(result)} before it was ready`
    : `its server did not answer GET ${settings.readyPath} on port ${settings.port} within its startTimeoutMs of ${settings.startTimeoutMs} ms (${(error as Error).message})`;
  return new FnixError('SERVER_NOT_READY', `${name} did not start: ${why}${tail}`, {
    details: { function: fn.name, ...exitDetails(result) },
    cause: error,
  });
}
