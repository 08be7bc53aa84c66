/**
 * @module
 * The floor of fork-per-request: bench/floor/floor-server.c, a minimal HTTP server in C that forks and
 * execs the command for each request, run on the host and in a container confined exactly like fnix's
 * (bench/host.ts `containerArgs`), so that fnix's figures read against what a process per request costs
 * on this machine, with and without the confinement.
 *
 * In a container: it has no network (--network none), so the host binds the port and hands the
 * listening socket in. `floor-server --bind 127.0.0.1:PORT --pass` binds it at fd 3 and execs
 * `podman run --rm --preserve-fds 1 ...` (with fnix's global podman options), attached rather than
 * detached: podman passes fd 3 on to conmon and runc, and stays in the foreground as the server's
 * process, the container's stderr its stderr. Stopping it is SIGTERM to that process, which podman
 * proxies to the container (floor-server, PID 1 there, exits on it), and --rm removes the container;
 * removeContainers then makes sure, whatever happened to podman.
 */
import { spawn } from 'node:child_process';
import { get } from 'node:http';
import { basename, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileStatic } from '../runtime/compile-c.ts';
import { removeContainers } from '../runtime/podman/remove.ts';
import type { BenchHost } from './host.ts';

const SOURCE = fileURLToPath(new URL('./floor/floor-server.c', import.meta.url));
/** How long a server has to answer its first request: a container takes well under a second here. */
const READY_TIMEOUT_MS = 20_000;
const PROBE_TIMEOUT_MS = 1000;
/** SIGTERM, then SIGKILL after this. */
const STOP_TIMEOUT_MS = 10_000;
/** How much of the server's stderr is kept for an error message. */
const STDERR_KEPT = 8192;

/** A running floor server. */
export interface FloorServer {
  /** `http://127.0.0.1:PORT/`: every path runs the command. */
  url: string;
  /** floor-server's pid on the host; for a container, that of the attached `podman run`. */
  pid: number;
  /** Ends the server and everything it started (for a container, the container too); resolves once they are gone. */
  stop(): Promise<void>;
}

/** Returns the path of floor-server compiled under `outDir`, compiling it when the source changed. */
export function buildFloorServer(outDir: string): Promise<string> {
  return compileStatic(SOURCE, outDir, 'floor-server');
}

/** The name of the container {@link startFloorInContainer} starts on `port`. */
export function floorContainerName(port: number): string {
  return `fnix-bench-floor-${process.pid}-${port}`;
}

/** Serves `command` (argv; the body on its stdin, its stdout the answer) at 127.0.0.1:`port`, on the host. */
export function startFloorOnHost(binary: string, command: string[], port: number): Promise<FloorServer> {
  return launch([binary, '--listen', `127.0.0.1:${port}`, '--', ...command], port, dirname(binary), async () => {});
}

/**
 * Serves `command` at 127.0.0.1:`port` from inside a container confined as fnix's are, its rootfs fnix's.
 * `command` runs in the container: give store paths (`${host.busybox}/bin/echo`).
 */
export function startFloorInContainer(host: BenchHost, binary: string, command: string[], port: number, options: { cpus?: number } = {}): Promise<FloorServer> {
  const name = floorContainerName(port);
  // One floor container serves every connection, where fnix spreads them over a container each: its CPU
  // quota can be raised to what they have between them (options.cpus), the rest of the confinement kept.
  const containerArgs = host.containerArgs.map((arg, i, all) => (options.cpus !== undefined && all[i - 1] === '--cpus' ? String(options.cpus) : arg));
  // biome-ignore format: one option and its value per line
  const argv = [
    binary, '--bind', `127.0.0.1:${port}`, '--pass', '--',
    'podman', ...host.podman.globalArgs, 'run',
    '--rm',
    '--preserve-fds', '1',
    '--name', name,
    ...containerArgs,
    '--volume', `${dirname(binary)}:/floor:ro`,
    '--rootfs', host.rootfs,
    `/floor/${basename(binary)}`, '--fd', '3', '--', ...command,
  ];
  // podman's working folder is conmon's, where it writes a file when the container hits its memory
  // limit: the binary's folder (the caller's state), as fnix uses its state folder (runtime/podman/podman.ts).
  return launch(argv, port, dirname(binary), () => removeContainers(host.podman, [name]));
}

/**
 * Runs a server program of one's own on the host (`argv`, in `cwd`, with exactly `env`), listening on
 * 127.0.0.1:`port`; resolves once it answers a GET there (bench/serve.ts: a serve function's program
 * run directly, the floor of fnix's serve mode).
 */
export function startProgramOnHost(argv: string[], port: number, options: { cwd: string; env: Record<string, string> }): Promise<FloorServer> {
  return launch(argv, port, options.cwd, async () => {}, options.env);
}

/** Spawns `argv` (with `env`, else this process's), resolves once it answers a GET at `port`; stops it and rejects if it does not. */
async function launch(argv: string[], port: number, cwd: string, cleanup: () => Promise<void>, env?: Record<string, string>): Promise<FloorServer> {
  const child = spawn(argv[0]!, argv.slice(1), { cwd, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_KEPT);
  });
  let ended: string | undefined;
  // A spawn that fails (binary missing) emits 'error' and no 'exit'.
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      ended = signal ? `killed by ${signal}` : `exited with ${code}`;
      resolve();
    });
    child.once('error', (error) => {
      ended = `could not start: ${error.message}`;
      resolve();
    });
  });
  const url = `http://127.0.0.1:${port}/`;
  const stop = async (): Promise<void> => {
    if (ended === undefined) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    await cleanup();
  };
  const what = `the floor server (${argv.slice(0, 4).join(' ')} ...)`;
  try {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (let last = ''; ; ) {
      if (ended !== undefined) throw new Error(`${what} ${ended} before answering; its stderr: ${stderr.trim() || '(empty)'}`);
      try {
        await probe(url);
        break;
      } catch (error) {
        last = (error as Error).message;
      }
      if (ended === undefined && Date.now() > deadline) {
        throw new Error(`${what} did not answer ${url} within ${READY_TIMEOUT_MS / 1000} s (${last}); its stderr: ${stderr.trim() || '(empty)'}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, pid: child.pid!, stop };
}

/** One GET on a connection of its own, closed after; resolves on any answer, 502 included. */
function probe(url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const request = get(url, { agent: false, timeout: PROBE_TIMEOUT_MS }, (response) => {
      response.on('error', reject).on('end', resolve).resume();
    });
    request.on('timeout', () => request.destroy(new Error(`no answer within ${PROBE_TIMEOUT_MS} ms`)));
    request.on('error', reject);
  });
}
