/**
 * @module
 * A real etcd (Debian's etcd-server) on loopback for a test file: free ports, a data folder of its own,
 * stopped by its pid. `restart` keeps the data folder, as a member that comes back does. An etcd that
 * never gets ready is killed (and, at the first start, its folder removed) before the error is thrown.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { waitUntil } from './processes.ts';

/** A free TCP port on 127.0.0.1 (free when asked; taken by whoever binds it next). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface LocalEtcd {
  /** Its client URL. */
  url: string;
  pid(): number | undefined;
  /** SIGKILL, and waits for it to be gone. */
  kill(): Promise<void>;
  /** Starts it again on the same ports and data folder (SIGKILLing it first if it runs). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startEtcd(): Promise<LocalEtcd> {
  const dir = await mkdtemp(join(tmpdir(), 'fnix-etcd-'));
  const [client, peer] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${client}`;
  let child: ResultPromise | undefined;
  const start = async () => {
    child = execa(
      'etcd',
      [
        '--name',
        'test',
        '--data-dir',
        join(dir, 'data'),
        '--listen-client-urls',
        url,
        '--advertise-client-urls',
        url,
        '--listen-peer-urls',
        `http://127.0.0.1:${peer}`,
        '--initial-advertise-peer-urls',
        `http://127.0.0.1:${peer}`,
        '--initial-cluster',
        `test=http://127.0.0.1:${peer}`,
      ],
      { reject: false, all: true },
    );
    const started = child;
    let output = '';
    started.all!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const ready = await waitUntil(() => /ready to serve client requests/.test(output) || started.exitCode !== null, 30_000, 'etcd to start').then(
      () => started.exitCode === null,
      () => false,
    );
    if (!ready) {
      await kill();
      throw new Error(`etcd did not start within 30 s (or exited):\n${output}`);
    }
  };
  const kill = async () => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null) return;
    running.kill('SIGKILL');
    await running;
  };
  const restart = async () => {
    // A restart of a running etcd stops it first: never two on the same ports and data folder.
    await kill();
    await start();
  };
  try {
    await start();
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    url,
    pid: () => child?.pid,
    kill,
    restart,
    stop: async () => {
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
