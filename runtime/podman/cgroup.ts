/**
 * @module
 * Per-container resource limits changed after start, by writing the container's cgroup files directly:
 * generic containers are started before anyone knows which function they will serve, and a warm
 * specialisation must not spawn `podman update` (about 100 ms).
 */
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

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
