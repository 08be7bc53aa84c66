/**
 * @module
 * Removing containers, and finding the ones an earlier run left behind.
 */
import type { Podman } from './podman.ts';

/** Kills and removes containers by name or id at once; names that no longer exist are ignored. */
export async function removeContainers(podman: Podman, names: readonly string[]): Promise<void> {
  if (names.length === 0) return;
  await podman.exec(['rm', '--force', '--ignore', '--time', '0', ...names]);
}

/** Names of every container, running or not, that carries `label=value`. */
export async function listContainers(podman: Podman, label: string, value: string): Promise<string[]> {
  const { stdout } = await podman.exec(['ps', '--all', '--filter', `label=${label}=${value}`, '--format', '{{.Names}}']);
  return String(stdout).split('\n').filter(Boolean);
}
