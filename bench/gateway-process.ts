/**
 * @module
 * The gateway under test, run as `npm start` runs it (the compiled dist/gateway/main.js, which
 * scripts/build.sh makes): its own Node process, so that its memory is its own and the load generator
 * does not share its event loop.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The Node flags `npm start` runs the gateway with (package.json's config.node_flags: source maps, and V8 heap sizing). */
export const GATEWAY_NODE_FLAGS: string[] = (
  JSON.parse(readFileSync(`${ROOT}/package.json`, 'utf8')) as { config: { node_flags: string } }
).config.node_flags.split(/\s+/);

/** A running gateway process. */
export interface GatewayProcess {
  url: string;
  pid: number;
  /** The gateway's resident memory now, in bytes. */
  rss(): Promise<number>;
  /** The pool as /healthz reports it. */
  pool(): Promise<{ warm: number; idle: number; busy: number; starting: number; total: number }>;
  /** SIGTERM, and wait for the exit. */
  stop(): Promise<void>;
}

/**
 * Starts the gateway with `env` (FNIX_* settings), its log going to `logFile`; resolves when the pool is
 * full. `nodeArgs` go to node before the script (`--cpu-prof`, say, to profile it); `flags` replace
 * npm start's own (to compare them with Node's defaults).
 */
export async function startGatewayProcess(
  env: Record<string, string>,
  logFile: string,
  nodeArgs: string[] = [],
  flags: string[] = GATEWAY_NODE_FLAGS,
): Promise<GatewayProcess> {
  const port = await freePort();
  // The log file itself, not a pipe through this process: a busy load generator must not slow the
  // gateway's (synchronous) log writes.
  const log = openSync(logFile, 'a');
  const child = spawn(process.execPath, [...flags, ...nodeArgs, 'dist/gateway/main.js'], {
    cwd: ROOT,
    env: { ...process.env, FNIX_HOST: '127.0.0.1', FNIX_PORT: String(port), ...env },
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  // A spawn that fails (node missing, no descriptor left) settles as an exit, not an uncaught 'error'.
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', resolve);
    child.once('error', () => resolve(null));
  });
  const url = `http://127.0.0.1:${port}`;
  const gateway: GatewayProcess = {
    url,
    pid: child.pid!,
    rss: () => residentBytes(child.pid!),
    async pool() {
      const health = (await (await fetch(`${url}/healthz`)).json()) as { pool: Awaited<ReturnType<GatewayProcess['pool']>> };
      return health.pool;
    },
    async stop() {
      await stopProcess(child, exited);
    },
  };
  try {
    await waitForPool(gateway, child, Number(env['FNIX_POOL_SIZE'] ?? 4), logFile);
  } catch (error) {
    await stopProcess(child, exited);
    throw error;
  }
  return gateway;
}

/** SIGTERM (the gateway removes its containers), then SIGKILL if it has not exited within 30 s. */
async function stopProcess(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

async function waitForPool(gateway: GatewayProcess, child: ChildProcess, size: number, logFile: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the gateway exited with ${child.exitCode}; see ${logFile}`);
    try {
      if ((await gateway.pool()).warm >= size) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the gateway did not become ready within 120 s; see ${logFile}`);
}

/** VmRSS of a process, from /proc. */
export async function residentBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
  return Number(kb) * 1024;
}

/** Samples a process's RSS every `everyMs` until stopped; reports the peak. */
export function sampleRss(pid: number, everyMs = 50): { stop(): Promise<number> } {
  let peak = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      peak = Math.max(peak, await residentBytes(pid).catch(() => 0));
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return peak;
    },
  };
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject).listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
