/**
 * @module
 * The benchmark's floor (bench/floor.ts, bench/floor/floor-server.c): the fork-per-request server
 * answers real HTTP as it must, byte for byte, keep-alive and pipelining included, on the host and in a
 * container confined as fnix's are; and once stopped it leaves no process and no container behind.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { Agent, request, type IncomingHttpHeaders } from 'node:http';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFloorServer, floorContainerName, startFloorInContainer, startFloorOnHost, type FloorServer } from '../../bench/floor.ts';
import { prepareHost, type BenchHost } from '../../bench/host.ts';
import { waitUntil } from '../helpers/processes.ts';

let stateDir: string;
let host: BenchHost;
let binary: string;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'fnix-floor-test-'));
  host = await prepareHost(join(stateDir, 'host'));
  binary = await buildFloorServer(join(stateDir, 'floor'));
});
afterAll(async () => {
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** The request went out on a connection an earlier one opened. */
  reused: boolean;
}

function send(url: string, options: { method?: string; body?: Buffer; agent?: Agent } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', agent: options.agent ?? false }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () => resolve({ status: response.statusCode!, headers: response.headers, body: Buffer.concat(chunks), reused: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Writes `bytes` on one connection and reads until the server closes it. */
function raw(url: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(bytes));
    let text = '';
    socket.setEncoding('latin1').on('data', (chunk: string) => {
      text += chunk;
    });
    socket.on('error', reject).on('end', () => resolve(text));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject).listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Host pids of processes whose command line contains `needle`. */
async function pidsRunning(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(needle)) pids.push(Number(entry));
  }
  return pids;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const KINDS = ['echo', 'cat', 'false'] as const;

describe.each(['host', 'container'] as const)('the floor server on the %s', (where) => {
  const servers = {} as Record<(typeof KINDS)[number], FloorServer>;
  const ports = {} as Record<(typeof KINDS)[number], number>;

  beforeAll(async () => {
    const commands = { echo: [`${host.busybox}/bin/echo`, 'hello'], cat: [`${host.busybox}/bin/cat`], false: [`${host.busybox}/bin/false`] };
    await Promise.all(
      KINDS.map(async (kind) => {
        ports[kind] = await freePort();
        servers[kind] =
          where === 'host'
            ? await startFloorOnHost(binary, commands[kind], ports[kind])
            : await startFloorInContainer(host, binary, commands[kind], ports[kind]);
      }),
    );
  });
  afterAll(async () => {
    await Promise.all(Object.values(servers).map((server) => server.stop()));
  });

  it('answers a GET with what the command printed', async () => {
    const answer = await send(servers.echo.url);
    expect(answer.status).toBe(200);
    expect(answer.headers['content-length']).toBe('6');
    expect(answer.headers['content-type']).toBe('application/octet-stream');
    expect(answer.body.toString()).toBe('hello\n');
  });

  it('passes a 200 KiB body through cat byte for byte', async () => {
    const body = randomBytes(200 * 1024);
    const answer = await send(servers.cat.url, { method: 'POST', body });
    expect(answer.status).toBe(200);
    expect(answer.headers['content-length']).toBe(String(body.length));
    expect(answer.body.equals(body)).toBe(true);
  });

  it('serves requests one after another on one keep-alive connection, pipelined ones too', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const answers: Answer[] = [];
      for (let i = 0; i < 5; i += 1) answers.push(await send(servers.cat.url, { method: 'POST', body: Buffer.from(`request ${i}`), agent }));
      expect(answers.map((a) => a.body.toString())).toEqual([0, 1, 2, 3, 4].map((i) => `request ${i}`));
      expect(answers.map((a) => a.reused)).toEqual([false, true, true, true, true]);
    } finally {
      agent.destroy();
    }
    const pipelined = await raw(
      servers.cat.url,
      'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nonePOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\ntwo',
    );
    expect(pipelined.match(/HTTP\/1\.1 200 OK\r\n/g)).toHaveLength(2);
    expect(pipelined).toMatch(/\r\n\r\none.*\r\n\r\ntwo$/s);
  });

  it('serves 8 connections at once', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 8 });
    try {
      const answers = await Promise.all(Array.from({ length: 32 }, () => send(servers.echo.url, { agent })));
      expect(answers.every((a) => a.status === 200 && a.body.toString() === 'hello\n')).toBe(true);
      expect(Object.values(agent.freeSockets).flat()).toHaveLength(8);
    } finally {
      agent.destroy();
    }
  });

  it('answers 502 with no body when the command exits non-zero', async () => {
    const answer = await send(servers.false.url);
    expect(answer.status).toBe(502);
    expect(answer.body.length).toBe(0);
  });

  if (where === 'container') {
    it('runs in a container without a network, and answers all the same', async () => {
      expect(host.containerArgs.join(' ')).toContain('--network none');
      const { stdout } = await host.podman.exec(['inspect', '--format', '{{.HostConfig.NetworkMode}} {{.Config.User}}', floorContainerName(ports.echo)]);
      expect(String(stdout).trim()).toBe('none 65534:65534');
      expect((await send(servers.echo.url)).body.toString()).toBe('hello\n');
    });
  }

  it('leaves nothing running once stopped', async () => {
    // An idle keep-alive connection holds a connection process: it must go with the server.
    const agent = new Agent({ keepAlive: true });
    await send(servers.echo.url, { agent });
    const needle = where === 'host' ? binary : `/floor/${basename(binary)}`;
    expect((await pidsRunning(needle)).length).toBeGreaterThan(0);
    await Promise.all(Object.values(servers).map((server) => server.stop()));
    agent.destroy();

    for (const server of Object.values(servers)) expect(isRunning(server.pid), `pid ${server.pid}`).toBe(false);
    await waitUntil(async () => (await pidsRunning(needle)).length === 0, 2000, `no process running ${needle}`);
    const names = KINDS.map((kind) => floorContainerName(ports[kind]));
    const left = await execa('podman', ['ps', '--all', '--format', '{{.Names}}']);
    expect(left.stdout.split('\n').filter((name) => names.includes(name))).toEqual([]);
    await expect(send(servers.echo.url)).rejects.toThrow(/ECONNREFUSED/);
  });
});
