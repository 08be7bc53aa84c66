/**
 * @module
 * An fnix node's gateway: the compiled dist/gateway/main.js (`bash scripts/build.sh` first), with
 * npm start's Node flags, run in the node's network and mount namespaces, on 0.0.0.0:8080 of the node's
 * address, its state in `<labdir>/<node>/state` (kept across restarts of the node), its output appended
 * to `<labdir>/<node>.log`.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GATEWAY_NODE_FLAGS } from '../../../bench/gateway-process.ts';
import { BUG_PREFIX } from '../../../gateway/process-guards.ts';
import type { NodeHost } from './node-host.ts';
import type { Daemon, ProcessRegistry } from './registry.ts';

/** The project's root: the gateway runs from it, as `npm start` does. */
export const PROJECT_ROOT = fileURLToPath(new URL('../../..', import.meta.url));

/** A running gateway of the lab. */
export interface LabNode {
  name: string;
  pid: number;
  /** `http://<node's address>:8080`, reached from the test's own (root) namespace. */
  url: string;
  /** The node's log file. */
  logFile: string;
  process: Daemon;
  /** Everything the gateway has logged so far (this start and earlier ones). */
  log(): Promise<string>;
  /** Lines where the gateway's process guards caught an unhandled error: a bug the test found. */
  bugs(): Promise<string[]>;
  /** SIGTERM (the gateway removes its containers), SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL, as a crash: its containers stay until the lab removes them. */
  kill(): Promise<void>;
  /** Polls `/healthz` from the root namespace until it answers 200; throws with the log's tail if the gateway exits or the time passes. */
  waitHealthy(timeoutMs?: number): Promise<void>;
}

/**
 * Starts the gateway of `host` with `env` over the lab's settings for it: FNIX_STATE_DIR, FNIX_HOST,
 * FNIX_PORT, FNIX_POOL_SIZE=2, and, when `env` sets FNIX_CLUSTER_ETCD, FNIX_NODE_NAME and FNIX_NODE_URL.
 */
export function startGateway(registry: ProcessRegistry, host: NodeHost, labDir: string, ip: string, env: Record<string, string>): LabNode {
  const logFile = join(labDir, `${host.name}.log`);
  const url = `http://${ip}:8080`;
  // The test's own FNIX_* settings are not the node's.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('FNIX_')));
  const nodeEnv = {
    ...inherited,
    FNIX_STATE_DIR: join(host.dir, 'state'),
    FNIX_HOST: '0.0.0.0',
    FNIX_PORT: '8080',
    // The node's identity in a cluster; a gateway started without FNIX_CLUSTER_ETCD refuses FNIX_NODE_URL.
    ...(env['FNIX_CLUSTER_ETCD'] ? { FNIX_NODE_NAME: host.name, FNIX_NODE_URL: url } : {}),
    FNIX_POOL_SIZE: '2',
    ...env,
  };
  const argv = [...host.nsenter(PROJECT_ROOT), process.execPath, ...GATEWAY_NODE_FLAGS, join(PROJECT_ROOT, 'dist/gateway/main.js')];
  const daemon = registry.spawn(`${host.name}-gateway`, argv, { log: logFile, env: nodeEnv });
  const log = () => readFile(logFile, 'utf8').catch(() => '');
  return {
    name: host.name,
    pid: daemon.pid,
    url,
    logFile,
    process: daemon,
    log,
    async bugs() {
      return (await log()).split('\n').filter((line) => line.includes(`ERROR ${BUG_PREFIX}`));
    },
    stop: (graceMs = 15_000) => daemon.stop(graceMs),
    async kill() {
      daemon.signal('SIGKILL');
      await daemon.exited;
    },
    async waitHealthy(timeoutMs = 120_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const status = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) }).then(
          (response) => response.status,
          () => 0,
        );
        if (status === 200) return;
        if (!daemon.running() || Date.now() > deadline) {
          const why = daemon.running() ? `not healthy after ${timeoutMs} ms (last answer: ${status || 'none'})` : 'exited';
          throw new Error(`cluster lab: node ${host.name}'s gateway ${why}; the end of ${logFile}:\n${(await log()).slice(-3000)}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
  };
}
