/**
 * @module
 * (f) The pool's refill rate: an empty pool of `size` is filled by the pool's own code, with the real
 * launcher and real containers, and timed until every container is warm (agent connected).
 */
import { join } from 'node:path';
import { ContainerLauncher } from '../runtime/container/launcher.ts';
import { Pool } from '../runtime/pool/pool.ts';
import type { BenchHost } from './host.ts';
import { loadConfig } from '../gateway/config.ts';

/** `npm start`'s settings: the containers are confined, and the pool set, as the gateway's are. */
const defaults = loadConfig({});

/** One fill of the pool. */
export interface RefillRound {
  containers: number;
  ms: number;
  perSecond: number;
}

/** Fills an empty pool of `size` containers `rounds` times. */
export async function measureRefill(host: BenchHost, stateDir: string, size: number, rounds: number): Promise<RefillRound[]> {
  const launcher = new ContainerLauncher({
    podman: host.podman,
    rootfs: host.rootfs,
    seccompProfile: host.seccompProfile,
    stateDir: join(stateDir, 'refill'),
    limits: defaults.limits,
  });
  await launcher.removeLeftovers();
  const results: RefillRound[] = [];
  for (let round = 0; round < rounds; round += 1) {
    const pool = new Pool({ source: launcher, size, maxContainers: size, idleTtlMs: defaults.idleTtlMs, queueTimeoutMs: defaults.queueTimeoutMs });
    const begin = performance.now();
    await pool.start();
    const ms = performance.now() - begin;
    const { warm } = pool.stats();
    await pool.close(0);
    if (warm !== size) throw new Error(`the pool filled ${warm} of ${size} containers: ${pool.stats().lastError ?? ''}`);
    results.push({ containers: size, ms, perSecond: (size / ms) * 1000 });
  }
  return results;
}
