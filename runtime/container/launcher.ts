/**
 * @module
 * Starts fnix containers and removes them. A start is: a host folder with a listening socket, one
 * `podman run --detach`, and the agent connecting back. Removal closes the agent's socket (the
 * container's PID 1 exits, so everything in it dies at once) and then `podman rm`s it, batched.
 */
import { createHash } from 'node:crypto';
import { chmod, chown, mkdir, rm, unlink } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { customAlphabet } from 'nanoid';
import { AgentConnection } from '../agent/connection.ts';
import { FnixError } from '../errors.ts';
import type { Podman } from '../podman/podman.ts';
import { listContainers, removeContainers } from '../podman/remove.ts';
import { type ContainerLimits, runContainer } from '../podman/run.ts';
import { MAX_SOCKET_PATH_BYTES } from '../unix-socket.ts';
import { Container } from './container.ts';

/** The label every fnix container carries, with the instance (state folder) it belongs to. */
export const INSTANCE_LABEL = 'io.fnix.instance';

/** Options for {@link ContainerLauncher}. */
export interface LauncherOptions {
  podman: Podman;
  /** The rootfs made by prepareRootfs. */
  rootfs: string;
  /** fnix's state folder; containers are labelled with a hash of it and keep their files under it. */
  stateDir: string;
  limits: ContainerLimits;
  /** fnix's seccomp profile (runtime/podman/seccomp.ts). */
  seccompProfile: string;
  /** How long a container may take to start and connect. @default 30_000 */
  startTimeoutMs?: number;
}

/** What a launch needs to know. */
export interface LaunchRequest {
  network: boolean;
  storeGeneration: number;
}

const SUFFIX_LENGTH = 10;
const makeSuffix = customAlphabet('0123456789abcdefghijklmnopqrstuvwxyz', SUFFIX_LENGTH);
const INSTANCE_LENGTH = 8;
/** A container's files: `<state>/run/<name>/`, with the agent's socket in ctl/ and the function in fn/. */
const CONTROL_DIR = 'ctl';
const AGENT_SOCKET = 'agent.sock';
const UID_BASE = 200_000;
const UID_RANGE = 800_000;
const REMOVE_BATCH_DELAY_MS = 20;

/** The longest state folder path under which every agent's socket path fits a unix socket's. */
export const MAX_STATE_DIR_BYTES =
  MAX_SOCKET_PATH_BYTES - join('/run', containerName('x'.repeat(INSTANCE_LENGTH), 'x'.repeat(SUFFIX_LENGTH)), CONTROL_DIR, AGENT_SOCKET).length;

function containerName(instance: string, suffix: string): string {
  return `fnix-${instance}-${suffix}`;
}

/** The instance label value for a state folder: containers of one fnix carry it, another's do not. */
export function instanceOf(stateDir: string): string {
  return createHash('sha256').update(stateDir).digest('hex').slice(0, INSTANCE_LENGTH);
}

/** Starts and removes containers for one fnix instance. */
export class ContainerLauncher {
  /** Distinguishes this instance's containers from another fnix's on the same host. */
  readonly instance: string;
  readonly #options: LauncherOptions;
  readonly #runRoot: string;
  #nextUid = Math.floor(Math.random() * UID_RANGE);
  #removeQueue: Container[] = [];
  #removeTimer: NodeJS.Timeout | undefined;
  #removals = new Set<Promise<void>>();

  constructor(options: LauncherOptions) {
    this.#options = options;
    this.instance = instanceOf(options.stateDir);
    this.#runRoot = join(options.stateDir, 'run');
  }

  /** Removes containers (and their folders) that an earlier run of this instance left behind. */
  async removeLeftovers(): Promise<number> {
    const names = await listContainers(this.#options.podman, INSTANCE_LABEL, this.instance);
    await removeContainers(this.#options.podman, names);
    await rm(this.#runRoot, { recursive: true, force: true });
    // Private to root: the control sockets under it must not be reachable by other host users.
    await mkdir(this.#runRoot, { recursive: true, mode: 0o700 });
    await chmod(this.#runRoot, 0o700);
    return names.length;
  }

  /** Starts a container and waits for its agent. Throws CONTAINER_START_FAILED. */
  async launch(request: LaunchRequest): Promise<Container> {
    const name = containerName(this.instance, makeSuffix());
    const runDir = join(this.#runRoot, name);
    const controlDir = join(runDir, CONTROL_DIR);
    const functionDir = join(runDir, 'fn');
    const uid = UID_BASE + (this.#nextUid++ % UID_RANGE);
    const socketPath = join(controlDir, AGENT_SOCKET);
    const startedAt = performance.now();
    const server = createServer();
    const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
    let id = '';
    let timer: NodeJS.Timeout | undefined;
    try {
      await mkdir(runDir, { mode: 0o700 });
      await mkdir(controlDir, { mode: 0o700 });
      await chown(controlDir, uid, uid);
      await mkdir(functionDir, { mode: 0o755 });
      await new Promise<void>((resolve, reject) => {
        // The first error fails the start; the server is closed below, so none comes later unheard.
        server.on('error', reject).listen(socketPath, resolve);
      });
      // Only the container's uid (and root) can connect; the folders above are root's alone.
      await chown(socketPath, uid, uid);
      await chmod(socketPath, 0o600);
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the agent did not connect within ${this.#startTimeoutMs} ms`)), this.#startTimeoutMs);
      });
      id = await Promise.race([
        runContainer(this.#options.podman, {
          name,
          labels: { [INSTANCE_LABEL]: this.instance },
          rootfs: this.#options.rootfs,
          controlDir,
          functionDir,
          uid,
          network: request.network,
          seccompProfile: this.#options.seccompProfile,
          ...this.#options.limits,
        }),
        timeout,
      ]);
      const podmanRunMs = performance.now() - startedAt;
      const socket = await Promise.race([accepted, timeout]);
      const connection = new AgentConnection(socket);
      await Promise.race([connection.hello, timeout]);
      return new Container({
        name,
        id,
        uid,
        network: request.network,
        storeGeneration: request.storeGeneration,
        runDir,
        controlDir,
        functionDir,
        memoryMb: this.#options.limits.memoryMb,
        pidsLimit: this.#options.limits.pidsLimit,
        connection,
        startedAt,
        startTimings: { podmanRunMs, agentConnectMs: performance.now() - startedAt - podmanRunMs },
      });
    } catch (error) {
      void removeContainers(this.#options.podman, [name]).catch(() => {});
      await rm(runDir, { recursive: true, force: true }).catch(() => {}); // else removed with run/ at the next start
      const stderr = (error as { stderr?: unknown }).stderr;
      throw new FnixError('CONTAINER_START_FAILED', `starting container ${name} failed: ${stderr || (error as Error).message}`, {
        details: { container: name },
        cause: error,
      });
    } finally {
      clearTimeout(timer);
      server.close();
      await unlink(socketPath).catch(() => {});
    }
  }

  /**
   * Kills a container now and removes it in the background (removals are batched into one
   * `podman rm`). {@link drain} waits for every removal started so far.
   */
  remove(container: Container, reason: string): void {
    container.kill(reason);
    this.#removeQueue.push(container);
    this.#removeTimer ??= setTimeout(() => this.#flushRemovals(), REMOVE_BATCH_DELAY_MS);
  }

  /** Waits for every pending removal. */
  async drain(): Promise<void> {
    if (this.#removeTimer) {
      clearTimeout(this.#removeTimer);
      this.#flushRemovals();
    }
    await Promise.allSettled([...this.#removals]);
  }

  get #startTimeoutMs(): number {
    return this.#options.startTimeoutMs ?? 30_000;
  }

  #flushRemovals(): void {
    this.#removeTimer = undefined;
    const batch = this.#removeQueue;
    this.#removeQueue = [];
    if (batch.length === 0) return;
    const removal = removeContainers(
      this.#options.podman,
      batch.map((c) => c.name),
    )
      .catch(() => {
        // --ignore covers containers already gone; anything else is retried by removeLeftovers at next start
      })
      .then(() => Promise.all(batch.map((c) => c.removeRunDir())))
      .then(
        () => undefined,
        () => undefined, // a run folder that would not go is removed with run/ at the next start
      );
    this.#removals.add(removal);
    void removal.finally(() => this.#removals.delete(removal));
  }
}
