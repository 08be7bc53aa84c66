/**
 * @module
 * Per-container resource limits changed after start, by writing the container's cgroup files directly:
 * generic containers are started before anyone knows which function they will serve, and a warm
 * specialisation must not spawn `podman update` (about 100 ms).
 */
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { access, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const CGROUP_ROOT = '/sys/fs/cgroup';

/** Where a container's memory limit lives, for the cgroup layouts Podman uses. */
export interface MemoryCgroup {
  version: 1 | 2;
  dir: string;
}

/** Finds the memory cgroup of container `id`, or undefined for a layout fnix does not know. */
export async function findMemoryCgroup(id: string): Promise<MemoryCgroup | undefined> {
  const leaves = [`libpod_parent/libpod-${id}`, `machine.slice/libpod-${id}.scope`];
  for (const leaf of leaves) {
    const v1 = join(CGROUP_ROOT, 'memory', leaf);
    if (await exists(join(v1, 'memory.limit_in_bytes'))) return { version: 1, dir: v1 };
    const v2 = join(CGROUP_ROOT, leaf);
    if (await exists(join(v2, 'memory.max'))) return { version: 2, dir: v2 };
  }
  return undefined;
}

/** Sets the memory limit, swap included (the container gets no swap beyond it). */
export async function setMemoryLimit(cgroup: MemoryCgroup, bytes: number, previousBytes: number): Promise<void> {
  if (cgroup.version === 2) {
    await writeFile(join(cgroup.dir, 'memory.max'), String(bytes));
    return;
  }
  // cgroup v1 requires memory <= memory+swap at every step, so the order depends on the direction.
  const memsw = join(cgroup.dir, 'memory.memsw.limit_in_bytes');
  const hasMemsw = await exists(memsw);
  const memory = join(cgroup.dir, 'memory.limit_in_bytes');
  if (bytes >= previousBytes) {
    if (hasMemsw) await writeFile(memsw, String(bytes));
    await writeFile(memory, String(bytes));
  } else {
    await writeFile(memory, String(bytes));
    if (hasMemsw) await writeFile(memsw, String(bytes));
  }
}

/** How often a container reached its limits so far: counters that only grow. */
export interface LimitEvents {
  /** Processes the kernel killed at the memory limit. */
  oomKills: number;
  /** Forks refused at the pids limit. */
  pidsMax: number;
}

/** Where a container's limit counters are. */
export interface LimitFiles {
  oom: string;
  pids: string;
}

/**
 * Finds the limit counters of container `id` (cgroup v1 `memory.oom_control` and `pids.events`, or v2
 * `memory.events` and `pids.events`); undefined for a layout fnix does not know.
 */
export function findLimitFiles(id: string): LimitFiles | undefined {
  const leaves = [`libpod_parent/libpod-${id}`, `machine.slice/libpod-${id}.scope`];
  for (const leaf of leaves) {
    for (const files of [
      { oom: join(CGROUP_ROOT, 'memory', leaf, 'memory.oom_control'), pids: join(CGROUP_ROOT, 'pids', leaf, 'pids.events') },
      { oom: join(CGROUP_ROOT, leaf, 'memory.events'), pids: join(CGROUP_ROOT, leaf, 'pids.events') },
    ]) {
      if (existsSync(files.oom)) return files;
    }
  }
  return undefined;
}

/**
 * A container's limit counters, open for its life: each read is one pread per file, where opening the
 * files by path cost a path walk through cgroupfs per invocation (about 40 µs on the warm path).
 */
export class LimitCounters {
  readonly #oom: number;
  readonly #pids: number | undefined;
  #closed = false;

  private constructor(oom: number, pids: number | undefined) {
    this.#oom = oom;
    this.#pids = pids;
  }

  /**
   * Opens the counters of container `id`: undefined for a layout fnix does not know (or a container
   * already gone), null when the files are there but could not be opened now (no descriptor left,
   * say), which is worth trying again.
   *
   * Two descriptors per container, for its serving life: they fit the per-container reserve of the
   * connection bound (gateway/connection-limit.ts), whose podman pipes are open only before the first
   * invocation (`podman run`) and after the agent's socket closes (`podman rm`), when these are not.
   */
  static open(id: string): LimitCounters | undefined | null {
    const files = findLimitFiles(id);
    if (!files) return undefined;
    let oom: number | undefined;
    try {
      oom = openSync(files.oom, 'r');
      return new LimitCounters(oom, existsSync(files.pids) ? openSync(files.pids, 'r') : undefined);
    } catch {
      if (oom !== undefined) closeSync(oom);
      return null;
    }
  }

  /**
   * Reads the counters. Synchronously, on purpose: they are kernel files that answer in microseconds,
   * and reading them as the invocation ends keeps its end in one turn of the event loop.
   */
  read(): LimitEvents | undefined {
    if (this.#closed) return undefined;
    try {
      const oom = readAt(this.#oom);
      const pids = this.#pids === undefined ? '' : readAt(this.#pids);
      return { oomKills: counter(oom, OOM_KILL), pidsMax: counter(pids, PIDS_MAX) };
    } catch {
      return undefined; // the container is gone
    }
  }

  /** Closes the files; later reads answer undefined. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeSync(this.#oom);
    if (this.#pids !== undefined) closeSync(this.#pids);
  }
}

const READ_BUFFER = Buffer.alloc(4096);
const OOM_KILL = /^oom_kill (\d+)$/m;
const PIDS_MAX = /^max (\d+)$/m;

/** The whole of a small kernel file, read from its start (cgroupfs makes its text afresh for each read at 0). */
function readAt(fd: number): string {
  const length = readSync(fd, READ_BUFFER, 0, READ_BUFFER.length, 0);
  return READ_BUFFER.toString('latin1', 0, length);
}

function counter(text: string, pattern: RegExp): number {
  const match = pattern.exec(text);
  return match ? Number(match[1]) : 0;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
