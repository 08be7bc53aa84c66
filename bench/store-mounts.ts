/**
 * @module
 * What fnix's containers hold of the store, read from the kernel rather than from fnix: for every
 * container of an instance, the mounts at or under /nix/store in its init's /proc/<pid>/mountinfo, and
 * what the store overlay's upper layer holds. fnix mounts the whole store once, when a container starts,
 * whatever it will serve (runtime/podman/run.ts), so that a function's closure is neither mounted path
 * by path nor copied in; a container that served a function with a large closure shows the same one
 * mount, and an empty upper layer, as any other.
 */
import { readdir, readFile } from 'node:fs/promises';
import { INSTANCE_LABEL, instanceOf } from '../runtime/container/launcher.ts';
import type { Podman } from '../runtime/podman/podman.ts';
import { listContainers } from '../runtime/podman/remove.ts';

/** What the instance's containers hold of the store. */
export interface StoreMounts {
  containers: number;
  /** Per container: its mounts at or under /nix/store (the store overlay is one). */
  storeMounts: number[];
  /** Files and folders in the store overlays' upper layers, all containers together: what was copied up or written. */
  upperEntries: number;
}

/** Reads the store mounts of every running container of the fnix instance whose state folder is `stateDir`. */
export async function inspectStoreMounts(podman: Podman, stateDir: string): Promise<StoreMounts> {
  const names = await listContainers(podman, INSTANCE_LABEL, instanceOf(stateDir));
  const storeMounts: number[] = [];
  let upperEntries = 0;
  for (const name of names) {
    const inspected = await podman.exec(['inspect', '--format', '{{.State.Pid}}', name], { reject: false });
    const pid = Number(String(inspected.stdout).trim());
    // A container the pool retired meanwhile is left out.
    const mountinfo = pid > 0 ? await readFile(`/proc/${pid}/mountinfo`, 'utf8').catch(() => undefined) : undefined;
    if (mountinfo === undefined) continue;
    const mounts = mountinfo
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split(' '))
      .filter((fields) => fields[4] === '/nix/store' || fields[4]?.startsWith('/nix/store/'));
    storeMounts.push(mounts.length);
    for (const fields of mounts) {
      // The overlay's own options come last, after the separator: `lowerdir=/nix/store,upperdir=...,workdir=...`.
      const upper = /(?:^|,)upperdir=([^,]+)/.exec(fields.at(-1) ?? '')?.[1];
      if (upper) upperEntries += (await readdir(upper, { recursive: true })).length;
    }
  }
  return { containers: storeMounts.length, storeMounts, upperEntries };
}
