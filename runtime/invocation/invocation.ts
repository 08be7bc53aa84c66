/**
 * @module
 * One run of a function's command in a container: its stdio as Node streams, its time limit, its output
 * limit, and how it ends. The agent connection delivers frames to {@link Invocation.handleFrame}; the
 * invocation never touches podman.
 */
import { constants as osConstants } from 'node:os';
import { Readable, Writable } from 'node:stream';
import { InvocationError, type ErrorCode } from '../errors.ts';
import { encodeFrame, encodeResize, encodeSpawn, FRAME, type SpawnRequest } from '../agent/protocol.ts';
import { NO_MASK, type SecretMask } from '../secrets/mask.ts';
import { TailBuffer } from '../stdio/tail.ts';

/** The agent side of an invocation, as the invocation sees it. */
export interface AgentChannel {
  /** Sends one encoded frame; with `wipe`, zeroes it once it is written (or the connection is gone). */
  send(frame: Buffer, options?: { wipe?: boolean }): void;
  /** Stops reading frames from the agent, so the agent stops reading the child's output. */
  pause(): void;
  /** Reads frames again. */
  resume(): void;
  /** Stdin bytes the agent accepts before it acknowledges them with CREDIT. */
  readonly stdinWindow: number;
  /** Tears the container down: the agent failed to end the invocation in time. */
  destroy(reason: string): void;
}

/** Why a caller stops an invocation. */
export type KillReason = 'timeout' | 'output_limit' | 'aborted' | 'shutdown';

/** How an invocation ended. */
export type EndReason = 'exit' | 'timeout' | 'output_limit' | 'aborted' | 'shutdown' | 'lost';

/** The outcome, always delivered (never thrown) by {@link Invocation.done}. */
export interface InvocationResult {
  reason: EndReason;
  /** The main process's exit code, when it exited by itself. */
  exitCode: number | undefined;
  /** The signal that ended the main process (e.g. SIGKILL), if one did. */
  signal: string | undefined;
  durationMs: number;
  /** Milliseconds from the spawn to the first stdout byte; undefined when there was none. */
  firstOutputMs: number | undefined;
  stdoutBytes: number;
  stderrBytes: number;
  /** The last bytes of stderr. */
  stderrTail: string;
  /** The kernel killed a process of it at the container's memory limit. */
  oomKilled: boolean;
  /** It tried to start more processes than the container's pids limit allows (a fork bomb, say). */
  pidsLimitHit: boolean;
  /** Undefined exactly when the command exited by itself with code 0. */
  error: InvocationError | undefined;
}

/** What an invocation runs and within which limits. */
export interface InvocationOptions {
  id: string;
  functionName: string;
  containerId?: string | undefined;
  spawn: SpawnRequest;
  /** Wall-clock limit from the spawn; the command is killed when it passes. Undefined: none (a server). */
  timeoutMs: number | undefined;
  /** stdout plus stderr bytes beyond which the command is killed. */
  maxOutputBytes: number;
  /** Aborting it kills the invocation (reason `aborted`), as a client disconnect should. */
  signal?: AbortSignal | undefined;
  /** The memory limit, quoted when the command dies of SIGKILL. */
  memoryMb?: number | undefined;
  /** The pids limit, quoted when the command reached it. */
  pidsLimit?: number | undefined;
  /**
   * Says, once the command has ended, whether it reached the container's memory or pids limit;
   * undefined when that cannot be known.
   */
  limitCheck?: (() => { oomKilled: boolean; pidsLimitHit: boolean } | undefined) | undefined;
  /**
   * Masks the values of the secrets the function declares (runtime/secrets/mask.ts): in the stderr
   * tail of the result, and for whoever keeps its output ({@link Invocation.mask}). Wiped once
   * stderr has ended. @default none
   */
  mask?: SecretMask | undefined;
}

/** After a KILL, how long the agent has to report EXIT before the container is torn down. */
export const KILL_DEADLINE_MS = 500;
const STDERR_TAIL_BYTES = 2048;
const STDIN_FRAME_BYTES = 64 * 1024;
const STREAM_HIGH_WATER_MARK = 64 * 1024;
const ALLOWED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGKILL', 'SIGHUP', 'SIGQUIT'] as const;
/** A signal a caller may send to the command's process group. */
export type AllowedSignal = (typeof ALLOWED_SIGNALS)[number];

/**
 * A running command. Consume both {@link stdout} and {@link stderr}: they share one connection, so an
 * unread stream pauses the other (that is the backpressure that keeps memory bounded).
 */
export class Invocation {
  readonly id: string;
  readonly functionName: string;
  readonly stdin: Writable;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Resolves once the command and everything it started are gone and its output is delivered. */
  readonly done: Promise<InvocationResult>;
  /** The command's pid inside the container, once started. */
  pid: number | undefined;

  /** The options, but the spawn request: that goes once it is sent (its env may hold secrets). */
  readonly #options: Omit<InvocationOptions, 'spawn'>;
  #spawn: SpawnRequest | undefined;
  readonly #mask: SecretMask;
  readonly #channel: AgentChannel;
  readonly #tail = new TailBuffer(STDERR_TAIL_BYTES);
  #resolveDone!: (result: InvocationResult) => void;
  #startedAt = 0;
  #firstOutputMs: number | undefined;
  #finished = false;
  #killReason: KillReason | undefined;
  #timers: NodeJS.Timeout[] = [];
  #stdoutBytes = 0;
  #stderrBytes = 0;
  #stdinInFlight = 0;
  #creditWaiter: (() => void) | undefined;
  #paused = { stdout: false, stderr: false };
  /** Whether the container's limit counters could be read (otherwise a SIGKILL gets an OOM hint). */
  #limitsKnown = false;
  #onAbort = () => this.kill('aborted');

  constructor(channel: AgentChannel, options: InvocationOptions) {
    this.id = options.id;
    this.functionName = options.functionName;
    this.#channel = channel;
    const { spawn, ...rest } = options;
    this.#options = rest;
    this.#spawn = spawn;
    this.#mask = options.mask ?? NO_MASK;
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
    this.stdout = new Readable({ highWaterMark: STREAM_HIGH_WATER_MARK, read: () => this.#unpause('stdout') });
    this.stderr = new Readable({ highWaterMark: STREAM_HIGH_WATER_MARK, read: () => this.#unpause('stderr') });
    this.stdin = new Writable({
      highWaterMark: STDIN_FRAME_BYTES,
      write: (chunk: Buffer, _encoding, callback) => {
        this.#writeStdin(chunk).then(() => callback(), callback);
      },
      final: (callback) => {
        if (!this.#finished) this.#channel.send(encodeFrame(FRAME.STDIN));
        callback();
      },
    });
    // Writes after the command ended are discarded, never an error: the caller may still be pumping a body.
    this.stdin.on('error', () => {});
  }

  /** Sends SPAWN and starts the clock. Called once, by the container. */
  start(): void {
    const spawn = this.#spawn;
    if (!spawn) throw new Error(`invocation ${this.id} was started already`);
    this.#spawn = undefined;
    this.#startedAt = performance.now();
    // Its own buffer, zeroed once written: it may carry secrets (their files, their variables).
    this.#channel.send(encodeSpawn(spawn), { wipe: true });
    const { timeoutMs } = this.#options;
    if (timeoutMs !== undefined) this.#timers.push(setTimeout(() => this.kill('timeout'), timeoutMs));
    const signal = this.#options.signal;
    if (signal?.aborted) this.kill('aborted');
    else signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /**
   * `text` (a line of its output, say) with the values of the secrets the function declares masked
   * as `[secret NAME]` (runtime/secrets/mask.ts): for what fnix keeps of its output, never for what
   * goes to its caller. Use it before the stderr stream has ended.
   */
  mask(text: string): string {
    return this.#mask(text);
  }

  /** Kills the command and every process it started. The first reason given is the one reported. */
  kill(reason: KillReason): void {
    if (this.#finished || this.#killReason) return;
    this.#killReason = reason;
    this.#channel.send(encodeFrame(FRAME.KILL));
    // From here output is discarded (see #output), so nothing may hold the connection paused: the
    // agent must be able to drain the command's pipes and report EXIT.
    this.#resumeChannel();
    // The agent normally answers within a millisecond; if it does not, the container goes.
    this.#timers.push(setTimeout(() => this.#channel.destroy(`no EXIT within ${KILL_DEADLINE_MS} ms of KILL`), KILL_DEADLINE_MS));
  }

  /** Sends a signal to the command's process group (on a tty, to the foreground group). */
  sendSignal(name: AllowedSignal): void {
    if (this.#finished) return;
    if (!ALLOWED_SIGNALS.includes(name)) throw new TypeError(`signal ${String(name)} is not allowed`);
    this.#channel.send(encodeFrame(FRAME.SIGNAL, Buffer.of(osConstants.signals[name])));
  }

  /** Resizes the pseudo-terminal of a tty invocation. */
  resize(cols: number, rows: number): void {
    if (!this.#finished) this.#channel.send(encodeResize(cols, rows));
  }

  /** True once the result is known. */
  get finished(): boolean {
    return this.#finished;
  }

  /** Handles a frame from the agent addressed to this invocation. */
  handleFrame(type: number, payload: Buffer): void {
    switch (type) {
      case FRAME.SPAWNED:
        this.pid = payload.readUInt32BE(0);
        break;
      case FRAME.STDOUT:
        this.#output('stdout', payload);
        break;
      case FRAME.STDERR:
        this.#tail.push(payload);
        this.#output('stderr', payload);
        break;
      case FRAME.CREDIT:
        this.#stdinInFlight = Math.max(0, this.#stdinInFlight - payload.readUInt32BE(0));
        this.#wakeStdin();
        break;
      case FRAME.EXIT: {
        const signaled = payload[0] === 1;
        const value = payload.readUInt32BE(1);
        this.#finish(signaled ? { signal: signalName(value) } : { exitCode: value });
        break;
      }
    }
  }

  /** The connection to the agent broke: the container and everything in it are gone. */
  handleLost(): void {
    this.#finish({});
  }

  #output(stream: 'stdout' | 'stderr', payload: Buffer): void {
    if (this.#finished) return;
    const total = this.#stdoutBytes + this.#stderrBytes;
    const room = this.#options.maxOutputBytes - total;
    const chunk = payload.length > room ? payload.subarray(0, Math.max(0, room)) : payload;
    if (stream === 'stdout') {
      if (chunk.length > 0 && !this.#killReason) this.#firstOutputMs ??= performance.now() - this.#startedAt;
      this.#stdoutBytes += chunk.length;
    } else this.#stderrBytes += chunk.length;
    if (chunk.length > 0 && !this.#killReason) {
      // The payload is a view into the decoder's buffer: the stream keeps a copy.
      const wantsMore = (stream === 'stdout' ? this.stdout : this.stderr).push(Buffer.from(chunk));
      if (!wantsMore) this.#pause(stream);
    }
    if (payload.length > room) this.kill('output_limit');
  }

  #pause(stream: 'stdout' | 'stderr'): void {
    if (!this.#paused.stdout && !this.#paused.stderr) this.#channel.pause();
    this.#paused[stream] = true;
  }

  #unpause(stream: 'stdout' | 'stderr'): void {
    if (!this.#paused[stream]) return;
    this.#paused[stream] = false;
    if (!this.#paused.stdout && !this.#paused.stderr) this.#channel.resume();
  }

  #resumeChannel(): void {
    if (!this.#paused.stdout && !this.#paused.stderr) return;
    this.#paused = { stdout: false, stderr: false };
    this.#channel.resume();
  }

  async #writeStdin(chunk: Buffer): Promise<void> {
    for (let offset = 0; offset < chunk.length && !this.#finished; ) {
      const piece = chunk.subarray(offset, offset + STDIN_FRAME_BYTES);
      while (!this.#finished && this.#stdinInFlight + piece.length > this.#channel.stdinWindow) {
        await new Promise<void>((resolve) => (this.#creditWaiter = resolve));
      }
      if (this.#finished) return;
      this.#stdinInFlight += piece.length;
      this.#channel.send(encodeFrame(FRAME.STDIN, piece));
      offset += piece.length;
    }
  }

  #wakeStdin(): void {
    const waiter = this.#creditWaiter;
    this.#creditWaiter = undefined;
    waiter?.();
  }

  #finish(exit: { exitCode?: number; signal?: string }): void {
    if (this.#finished) return;
    this.#finished = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#options.signal?.removeEventListener('abort', this.#onAbort);
    this.#wakeStdin();
    // Nothing more comes for this invocation; the connection must not stay paused for the next one.
    this.#resumeChannel();
    const durationMs = this.#startedAt ? performance.now() - this.#startedAt : 0;
    const limits = this.#options.limitCheck?.();
    this.#limitsKnown = limits !== undefined;
    this.#settle(exit, durationMs, limits ?? { oomKilled: false, pidsLimitHit: false });
  }

  #settle(exit: { exitCode?: number; signal?: string }, durationMs: number, limits: { oomKilled: boolean; pidsLimitHit: boolean }): void {
    const reason: EndReason = this.#killReason ?? (exit.exitCode === undefined && exit.signal === undefined ? 'lost' : 'exit');
    const result: InvocationResult = {
      reason,
      exitCode: exit.exitCode,
      signal: exit.signal,
      durationMs,
      firstOutputMs: this.#firstOutputMs,
      stdoutBytes: this.#stdoutBytes,
      stderrBytes: this.#stderrBytes,
      stderrTail: this.#mask(this.#tail.toString()),
      oomKilled: limits.oomKilled,
      pidsLimitHit: limits.pidsLimitHit,
      error: undefined,
    };
    result.error = this.#makeError(result);
    // The result is known before the streams end, so a consumer that sees the end can read it.
    this.#resolveDone(result);
    // Wiped after whoever keeps the stderr lines has had its last ones: their 'end' listeners came first.
    if (this.#mask !== NO_MASK) this.stderr.once('end', () => this.#mask.wipe());
    this.stdout.push(null);
    this.stderr.push(null);
  }

  #makeError(result: InvocationResult): InvocationError | undefined {
    if (result.reason === 'exit' && result.exitCode === 0) return undefined;
    const name = `function '${this.functionName}'`;
    const facts = {
      functionName: this.functionName,
      invocationId: this.id,
      containerId: this.#options.containerId,
      exitCode: result.exitCode,
      signal: result.signal,
      stderrTail: result.stderrTail,
      durationMs: result.durationMs,
      timedOut: result.reason === 'timeout',
      isOutputLimit: result.reason === 'output_limit',
    };
    const errors: Record<EndReason, [ErrorCode, string]> = {
      exit:
        result.signal === undefined
          ? ['FUNCTION_FAILED', `${name} exited with code ${result.exitCode}`]
          : ['FUNCTION_FAILED', `${name} was killed by ${result.signal}${this.#limitsKnown ? '' : oomHint(result.signal, this.#options.memoryMb)}`],
      timeout: ['FUNCTION_TIMEOUT', `${name} did not finish within its timeoutMs of ${this.#options.timeoutMs} ms`],
      output_limit: ['OUTPUT_LIMIT', `${name} wrote more than ${this.#options.maxOutputBytes} bytes of output`],
      aborted: ['INVOCATION_ABORTED', `${name} was stopped because its caller went away`],
      shutdown: ['SHUTTING_DOWN', `${name} was stopped because fnix is shutting down`],
      lost: ['CONTAINER_LOST', `the container running ${name} stopped unexpectedly`],
    };
    let [code, message] = errors[result.reason];
    // The kernel killed it at the memory limit: that, not the signal, is what the caller needs to know.
    if (result.oomKilled && (result.reason === 'exit' || result.reason === 'timeout')) {
      code = 'FUNCTION_OOM';
      message = `${name} ran out of memory: it used more than its memoryMb of ${this.#options.memoryMb ?? '?'} MiB and was killed`;
    }
    if (result.pidsLimitHit) message += ` (it reached the limit of ${this.#options.pidsLimit ?? 'its'} processes)`;
    return new InvocationError(code, message, { ...facts, oomKilled: result.oomKilled, pidsLimitHit: result.pidsLimitHit });
  }
}

function signalName(signal: number): string {
  const entry = Object.entries(osConstants.signals).find(([, value]) => value === signal);
  return entry ? entry[0] : `signal ${signal}`;
}

function oomHint(signal: string, memoryMb: number | undefined): string {
  return signal === 'SIGKILL' && memoryMb ? ` (out of memory? its memoryMb is ${memoryMb})` : '';
}
