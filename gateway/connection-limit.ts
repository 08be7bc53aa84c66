/**
 * @module
 * How many client connections the gateway may hold: its open-files limit, less the descriptors it keeps
 * for its own work. Every connection is a descriptor, and so is every agent socket, every pipe to a
 * podman, nix or git process, every file of the state folder being written; a gateway that let clients
 * take them all could start nothing else (in the past, a `podman rm` that could not start ended the
 * process). Node raises its soft open-files limit to the hard one as it starts, as servers do.
 */
import { readFileSync } from 'node:fs';

/** Descriptors kept whatever the pool's size: Node's own, podman, nix and git processes, the state folder, the hook socket. */
export const BASE_RESERVE = 192;
/** Descriptors kept per container: its agent socket, and the pipes of a `podman run` or `podman rm` for it. */
export const PER_CONTAINER_RESERVE = 4;
/** The fewest connections worth serving; an open-files limit that leaves fewer is an error at start. */
export const MIN_CONNECTIONS = 64;

/** The process's soft open-files limit, from /proc/self/limits; undefined when it cannot be read or is unlimited. */
export function readOpenFilesLimit(limitsText?: string): number | undefined {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return undefined;
    }
  }
  const match = /^Max open files\s+(\d+|unlimited)\s+/m.exec(text);
  return match && match[1] !== 'unlimited' ? Number(match[1]) : undefined;
}

/** The descriptors fnix keeps for its own work with `maxContainers` containers. */
export function reserveFor(maxContainers: number): number {
  return BASE_RESERVE + PER_CONTAINER_RESERVE * maxContainers;
}

/** What {@link connectionBudget} decided. */
export interface ConnectionBudget {
  /** Connections served at once; more are closed as they arrive. */
  maxConnections: number;
  /** Descriptors kept for fnix's own work. */
  reserve: number;
  /** The open-files limit it was computed from (undefined when unknown). */
  openFiles: number | undefined;
}

/** A budget that cannot be met: names the limit, what fnix keeps, and the fix. */
export class ConnectionBudgetError extends Error {
  override name = 'ConnectionBudgetError';
}

/**
 * The connections the gateway may serve: FNIX_MAX_CONNECTIONS when set (it must fit), else the open-files
 * limit less the reserve. Throws ConnectionBudgetError when they do not fit.
 * @example
 * connectionBudget({ openFiles: 20000, maxContainers: 52 }); // { maxConnections: 19600, reserve: 400, ... }
 */
export function connectionBudget(options: { openFiles: number | undefined; maxContainers: number; configured?: number | undefined }): ConnectionBudget {
  const { openFiles, maxContainers, configured } = options;
  const reserve = reserveFor(maxContainers);
  if (openFiles === undefined) return { maxConnections: configured ?? 16_384, reserve, openFiles };
  const room = openFiles - reserve;
  if (room < MIN_CONNECTIONS) {
    throw new ConnectionBudgetError(
      `the open-files limit is ${openFiles}, and fnix keeps ${reserve} of them for its own work (FNIX_MAX_CONTAINERS=${maxContainers}): raise the limit to at least ${reserve + MIN_CONNECTIONS} (ulimit -n, or LimitNOFILE= under systemd), or lower FNIX_MAX_CONTAINERS`,
    );
  }
  if (configured !== undefined && configured > room) {
    throw new ConnectionBudgetError(
      `FNIX_MAX_CONNECTIONS=${configured} does not fit the open-files limit of ${openFiles}, of which fnix keeps ${reserve} for its own work: set it to ${room} at most, or raise the limit (ulimit -n)`,
    );
  }
  return { maxConnections: configured ?? room, reserve, openFiles };
}
