/**
 * @module
 * A started container with a connected agent. It starts generic, is specialised once for one function
 * version (files linked at /fn, memory limit set), and then runs that version's invocations one at a
 * time until it is retired.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { AgentConnection } from '../agent/connection.ts';
import { findMemoryCgroup, LimitCounters, setMemoryLimit, type MemoryCgroup } from '../podman/cgroup.ts';
import type { FunctionVersion } from '../functions/version.ts';
import { Invocation, type AgentChannel, type InvocationOptions, type KillReason } from '../invocation/invocation.ts';
import { linkTree } from './link-tree.ts';
import { RELAY_SOCKET, RelayHub } from './relay.ts';

/** How long the agent may take to clean up after an invocation before its container is removed. */
export const READY_DEADLINE_MS = 5_000;

/** How a container was made; fixed for its life. */
export interface ContainerInit {
  name: string;
  id: string;
  uid: number;
  network: boolean;
  /** The pool's store generation when it started (see Pool.markStoreChanged). */
  storeGeneration: number;
  /** Host folder holding this container's control socket and /fn; removed with it. */
  runDir: string;
  /** Host folder mounted read-only at /run/fnix (the agent's socket, and the relay socket). */
  controlDir: string;
  /** Host folder mounted at /fn. */
  functionDir: string;
  memoryMb: number;
  /** The container's pids limit, quoted in errors. */
  pidsLimit?: number | undefined;
  connection: AgentConnection;
  startedAt: number;
  /** Phase timings of the start, in ms. */
  startTimings: { podmanRunMs: number; agentConnectMs: number };
}

/** A running fnix container. */
export class Container {
  readonly name: string;
  readonly id: string;
  readonly uid: number;
  readonly network: boolean;
  readonly storeGeneration: number;
  readonly runDir: string;
  readonly startedAt: number;
  readonly startTimings: ContainerInit['startTimings'];
  /** The function version this container serves, once specialised. */
  specializedFor: string | undefined;
  invocationCount = 0;
  lastUsedAt: number;

  readonly #functionDir: string;
  readonly #controlDir: string;
  #relays: Promise<RelayHub> | undefined;
  readonly #connection: AgentConnection;
  #memoryMb: number;
  readonly #pidsLimit: number | undefined;
  #memoryCgroup: MemoryCgroup | undefined | null = null;
  /** The cgroup files counting limit hits, open; null until looked up, undefined when not found. */
  #limitCounters: LimitCounters | undefined | null = null;
  #current: Invocation | undefined;

  constructor(init: ContainerInit) {
    this.name = init.name;
    this.id = init.id;
    this.uid = init.uid;
    this.network = init.network;
    this.storeGeneration = init.storeGeneration;
    this.runDir = init.runDir;
    this.startedAt = init.startedAt;
    this.lastUsedAt = init.startedAt;
    this.startTimings = init.startTimings;
    this.#functionDir = init.functionDir;
    this.#controlDir = init.controlDir;
    this.#connection = init.connection;
    this.#memoryMb = init.memoryMb;
    this.#pidsLimit = init.pidsLimit;
  }

  /** Resolves when the agent's connection closes: the container is gone or going. */
  get exited(): Promise<void> {
    return this.#connection.closed;
  }

  get isAlive(): boolean {
    return !this.#connection.isClosed;
  }

  /** Makes this generic container serve `fn`: links its files into /fn and applies its memory limit. */
  async specialize(fn: FunctionVersion): Promise<void> {
    if (this.specializedFor !== undefined) throw new Error(`container ${this.name} already serves ${this.specializedFor}`);
    this.specializedFor = fn.key;
    await linkTree(fn.dir, this.#functionDir);
    await this.#applyMemoryLimit(fn.manifest.memoryMb);
  }

  /**
   * Starts an invocation. `released` resolves once the agent has cleaned up after it: true when the
   * container can serve again, false when it must be retired.
   */
  invoke(options: Omit<InvocationOptions, 'containerId'>): { invocation: Invocation; released: Promise<boolean> } {
    if (this.#current) throw new Error(`container ${this.name} is busy`);
    this.invocationCount += 1;
    const connection = this.#connection;
    const channel: AgentChannel = {
      send: (frame, sending) => connection.send(frame, sending),
      pause: () => connection.pause(),
      resume: () => connection.resume(),
      stdinWindow: connection.stdinWindow,
      destroy: (reason) => connection.destroy(reason),
    };
    // Whether the command reached a limit: since a container that reached one is never used again,
    // any count at all is this invocation's.
    if (this.#limitCounters === null) {
      // null again when they could not be opened now: the next invocation tries again.
      const counters = LimitCounters.open(this.id);
      this.#limitCounters = counters;
      if (counters) void connection.closed.then(() => counters.close());
    }
    const counters = this.#limitCounters;
    const limitCheck = counters
      ? () => {
          const events = counters.read();
          return events && { oomKilled: events.oomKills > 0, pidsLimitHit: events.pidsMax > 0 };
        }
      : undefined;
    const invocation = new Invocation(channel, {
      ...options,
      containerId: this.name,
      memoryMb: this.#memoryMb,
      pidsLimit: this.#pidsLimit,
      limitCheck,
    });
    const ready = connection.attach(invocation);
    this.#current = invocation;
    invocation.start();
    // Cleaning up after an invocation takes the agent well under a millisecond; one that does not
    // report READY soon after EXIT is wedged, and its container goes.
    void invocation.done.then(() => {
      const timer = setTimeout(() => connection.destroy(`no READY within ${READY_DEADLINE_MS} ms of EXIT`), READY_DEADLINE_MS);
      void ready.finally(() => clearTimeout(timer));
    });
    // A container whose command reached its pids or memory limit is not used again: whatever it did
    // there (a fork bomb, a memory bomb) is not worth finding out about on the next invocation.
    const released = Promise.all([ready, invocation.done]).then(([clean, result]) => {
      this.#current = undefined;
      this.lastUsedAt = performance.now();
      return clean && this.isAlive && !result.pidsLimitHit && !result.oomKilled;
    });
    return { invocation, released };
  }

  /**
   * The relays into this container, to reach a server on its loopback (runtime/container/relay.ts);
   * made on first use. They work while an invocation runs, and close with the container.
   */
  openRelays(): Promise<RelayHub> {
    this.#relays ??= RelayHub.listen(join(this.#controlDir, RELAY_SOCKET), this.uid, (frame) => this.#connection.send(frame)).then((hub) => {
      this.#connection.relays = hub;
      if (this.#connection.isClosed) hub.close();
      else void this.#connection.closed.then(() => hub.close());
      return hub;
    });
    return this.#relays;
  }

  /** Stops the invocation under way, if any, reporting `reason`. */
  stopInvocation(reason: KillReason): void {
    this.#current?.kill(reason);
  }

  /** Closes the agent's connection, which ends the container at once (its PID 1 exits). */
  kill(reason: string): void {
    this.#connection.destroy(reason);
  }

  /** Removes this container's host folder. Call after the container is gone. */
  async removeRunDir(): Promise<void> {
    await rm(this.runDir, { recursive: true, force: true });
  }

  async #applyMemoryLimit(memoryMb: number): Promise<void> {
    if (memoryMb === this.#memoryMb) return;
    if (this.#memoryCgroup === null) this.#memoryCgroup = await findMemoryCgroup(this.id);
    if (!this.#memoryCgroup) {
      throw new Error(`cannot find the memory cgroup of container ${this.name} to set its limit to ${memoryMb} MiB`);
    }
    await setMemoryLimit(this.#memoryCgroup, memoryMb * 1024 * 1024, this.#memoryMb * 1024 * 1024);
    this.#memoryMb = memoryMb;
  }
}
