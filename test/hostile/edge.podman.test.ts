/**
 * @module
 * The gateway's edge, against the real entry point (gateway/main.ts) run under a lowered open-files
 * limit: a flood of idle connections from client processes of their own, wrong tokens by the
 * thousand, requests Node's parser refuses, `Expect: 100-continue` over the body limit, and SIGHUP.
 * The process must stay up, serve what it has, say what it refused, and drain on SIGHUP.
 */
import { request as httpRequest, Agent } from 'node:http';
import { connect } from 'node:net';
import { mkdtemp, readdir, rm, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INSTANCE_LABEL, instanceOf } from '../../runtime/container/launcher.ts';
import { fileURLToPath } from 'node:url';
import { GATEWAY_NODE_FLAGS } from '../../bench/gateway-process.ts';
import { EXAMPLES_DIR, functionsFrom } from '../helpers/gateway.ts';
import { startMain, type MainProcess } from '../helpers/main-process.ts';
import { pidsWithEnv, waitUntil } from '../helpers/processes.ts';
import { HOSTILE_DIR, report } from './helpers.ts';

const TOKEN = 'edge-test-token-0123456789';
const OPEN_FILES = 2048;
const MAX_BODY = 1024 * 1024;
let work: string;
let stateDir: string;
let main: MainProcess;
let port: number;
/** One connection kept open from before the flood: what the gateway already serves must go on. */
const kept = new Agent({ keepAlive: true, maxSockets: 1 });

/** A request over `agent` (or a fresh connection from `localAddress`); resolves with status, headers and body. */
function send(
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: string; agent?: Agent; localAddress?: string } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        headers: options.headers,
        agent: options.agent ?? false,
        localAddress: options.localAddress,
      },
      (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () => resolve({ status: response.statusCode!, headers: response.headers, body }));
      },
    );
    request.on('error', reject);
    request.setTimeout(15_000, () => request.destroy(new Error(`no answer to ${path} within 15 s`)));
    request.end(options.body);
  });
}

/** Bytes on a fresh connection, and everything the server answered until it closed (or 5 s passed). */
function raw(bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes));
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString('latin1')));
    socket.on('error', () => resolve(answer));
    socket.on('close', () => resolve(answer));
    setTimeout(() => {
      socket.destroy();
      resolve(answer);
    }, 5000).unref();
  });
}

/** The JSON body of a raw HTTP answer. */
function jsonOf(answer: string): any {
  return JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4));
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fnix-edge-'));
  stateDir = join(work, 'state');
  main = await startMain(
    {
      FNIX_STATE_DIR: stateDir,
      FNIX_POOL_SIZE: '1',
      FNIX_TOKEN: TOKEN,
      FNIX_MAX_BODY: String(MAX_BODY),
      FNIX_FUNCTIONS_DIR: await functionsFrom(EXAMPLES_DIR, HOSTILE_DIR),
      FNIX_SHUTDOWN_GRACE_MS: '10000',
    },
    // A soft limit below the hard one, which Node raises to the hard one as it starts.
    { prefix: ['prlimit', `--nofile=1024:${OPEN_FILES}`, '--'] },
  );
  port = Number(new URL(main.url).port);
});
afterAll(async () => {
  kept.destroy();
  if (main && main.child.exitCode === null) main.child.kill('SIGKILL');
  await main?.child;
  await rm(work, { recursive: true, force: true });
});

describe('the edge of the gateway', () => {
  it(`survives ${OPEN_FILES + 552} idle connections at an open-files limit of ${OPEN_FILES}: serves what it has, refuses the rest, serves again after`, async () => {
    const gatewayPid = main.child.pid!;
    expect((await send('/fn/hello', { agent: kept })).body).toBe('Hello, world! This is fnix.\n');
    // Two client processes of their own, holding 1,300 idle connections each.
    const flood = (count: number): ResultPromise =>
      execa(
        'node',
        [
          '-e',
          `
        const net = require('node:net');
        let connected = 0, closed = 0, made = 0;
        // 50 every 25 ms: a pace the kernel's accept queue takes without dropping handshakes (those
        // would be retried by the kernel for up to 30 s, which would make the counts below wait).
        const batch = setInterval(() => {
          for (let i = 0; i < 50 && made < ${count}; i++, made++) {
            const s = net.connect(${port}, '127.0.0.1');
            s.on('connect', () => connected++).on('close', () => closed++).on('error', () => {});
          }
          if (made === ${count}) clearInterval(batch);
        }, 25);
        setInterval(() => console.log(JSON.stringify({ connected, closed })), 200);
      `,
        ],
        { reject: false, buffer: false },
      );
    // The kept connection stays busy, so that its keep-alive deadline (5 s) never closes it meanwhile.
    const heartbeat = setInterval(() => void send('/healthz', { agent: kept }).catch(() => {}), 1000);
    const clients = [flood(1300), flood(1300)];
    const counts = clients.map(() => ({ connected: 0, closed: 0 }));
    for (const [i, client] of clients.entries()) {
      client.stdout!.on('data', (chunk: Buffer) => {
        const last = chunk.toString().trim().split('\n').at(-1);
        if (last) counts[i] = JSON.parse(last);
      });
    }
    try {
      await waitUntil(() => counts.every((c) => c.connected === 1300), 20_000, 'every flood connection to be made');
      // What it serves goes on, over the connection it had: work that starts a process (git, whose
      // pipes are descriptors too; a spawn without them once ended the gateway), a function, the metrics.
      const refs = await send('/git/functions.git/info/refs?service=git-upload-pack', {
        headers: { authorization: `Basic ${Buffer.from(`fnix:${TOKEN}`).toString('base64')}` },
        agent: kept,
      });
      expect(refs.status).toBe(200);
      expect(refs.body).toContain('refs/heads/main');
      const echoed = await send('/fn/echo', { method: 'POST', body: 'during the flood', agent: kept });
      expect(echoed.body).toBe('during the flood');
      await waitUntil(() => main.output().includes('connection limit reached'), 5000, 'the refusal in the log');
      // Each the gateway refused, it closed as it took it from the kernel's queue; the others it holds, idle.
      const closed = () => counts.reduce((sum, c) => sum + c.closed, 0);
      await waitUntil(() => closed() >= 2600 - 1664, 20_000, 'the refused connections to be closed');
      const held = counts.reduce((sum, c) => sum + c.connected - c.closed, 0);
      const descriptors = (await readdir(`/proc/${gatewayPid}/fd`)).length;
      const metrics = (await send('/metrics', { agent: kept })).body; // the metrics, too
      const refused = Number(/^fnix_connections_refused_total (\d+)$/m.exec(metrics)?.[1]);
      expect(refused).toBeGreaterThanOrEqual(2600 - 1664 - 1);
      expect(metrics).toMatch(/^fnix_connections_max 1664$/m);
      // Started with a soft limit of 1024: Node raised it to the hard one, 2048.
      expect(main.output()).toMatch(/INFO connections maxConnections=1664 openFilesLimit=2048 keptForFnix=384/);
      expect(held).toBeLessThanOrEqual(1664);
      expect(descriptors).toBeLessThan(OPEN_FILES);
      expect(main.output().split('connection limit reached').length).toBe(2); // said once
      expect(main.child.exitCode).toBeNull();
      // The limit lowered under it to what it holds now: no descriptor left at all. A process start
      // fails (a 500, its cause in the log), and the gateway goes on; with room again, it works again.
      await execa('prlimit', ['--pid', String(gatewayPid), `--nofile=${(await readdir(`/proc/${gatewayPid}/fd`)).length}:${OPEN_FILES}`]);
      const starved = await send('/git/functions.git/info/refs?service=git-upload-pack', {
        headers: { authorization: `Basic ${Buffer.from(`fnix:${TOKEN}`).toString('base64')}` },
        agent: kept,
      });
      expect(starved.status).toBe(500);
      expect(JSON.parse(starved.body).error.code).toBe('INTERNAL_ERROR');
      expect(main.output()).toMatch(/EMFILE/);
      await execa('prlimit', ['--pid', String(gatewayPid), `--nofile=${OPEN_FILES}:${OPEN_FILES}`]);
      expect(
        (
          await send('/git/functions.git/info/refs?service=git-upload-pack', {
            headers: { authorization: `Basic ${Buffer.from(`fnix:${TOKEN}`).toString('base64')}` },
            agent: kept,
          })
        ).status,
      ).toBe(200);
      expect(main.child.exitCode).toBeNull();
      // The flood goes: new connections are served again.
      for (const client of clients) client.kill('SIGKILL');
      await Promise.all(clients);
      await waitUntil(() => main.output().includes('accepting connections again'), 10_000, 'the recovery in the log');
      expect((await send('/fn/hello')).status).toBe(200);
      await report('idle connections past the open-files limit', {
        openFilesLimit: OPEN_FILES,
        connections: 2600,
        held,
        refused,
        gatewayDescriptors: descriptors,
        duringTheFlood: 'git (a process start), a function and /metrics served over a kept connection',
        noDescriptorLeft: 'git could not start: 500, the gateway went on, and served git again once it had room',
        after: 'new connections served again',
      });
    } finally {
      clearInterval(heartbeat);
      for (const client of clients) client.kill('SIGKILL');
      await Promise.allSettled(clients);
    }
  });

  it("answers what Node's parser refuses with the same JSON errors as the app", async () => {
    const cases: Array<[string, string, number, string]> = [
      ['HTTP/1.1 without Host', 'GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n', 400, 'BAD_REQUEST'],
      ['OPTIONS *', 'OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n', 400, 'BAD_REQUEST'],
      ['garbage', 'NOT HTTP AT ALL\r\n\r\n', 400, 'BAD_REQUEST'],
      ['headers over 16 KiB', `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'REQUEST_HEADERS_TOO_LARGE'],
      [
        'an Expect other than 100-continue',
        'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: magic\r\nConnection: close\r\n\r\n',
        417,
        'EXPECTATION_FAILED',
      ],
    ];
    for (const [label, bytes, status, code] of cases) {
      const answer = await raw(bytes);
      expect(answer, label).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
      expect(answer, label).toMatch(/\r\ncontent-type: application\/json; charset=utf-8\r\n/i);
      expect(jsonOf(answer).error.code, label).toBe(code);
    }
    await report("requests Node's parser refuses", { answered: cases.map(([label, , status, code]) => `${label}: ${status} ${code} (JSON)`) });
  });

  it('answers Expect: 100-continue over the body limit with 413 at once, and sends 100 Continue only to a body it will read', async () => {
    const over = await raw(`POST /fn/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${MAX_BODY + 1}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`);
    expect(over).toMatch(/^HTTP\/1\.1 413 /);
    expect(over).not.toContain('100 Continue');
    expect(jsonOf(over).error.code).toBe('BODY_TOO_LARGE');
    const fits = await new Promise<string>((resolve) => {
      const socket = connect(port, '127.0.0.1', () =>
        socket.write('POST /fn/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n'),
      );
      let answer = '';
      socket.on('data', (chunk) => {
        answer += chunk.toString('latin1');
        if (answer === 'HTTP/1.1 100 Continue\r\n\r\n') socket.write('hello');
      });
      socket.on('close', () => resolve(answer));
    });
    expect(fits).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
    expect(fits).toMatch(/\r\n\r\n(5\r\n)?hello/); // whole, or streamed in a chunk
    await report('Expect: 100-continue', { overTheLimit: '413 at once, no 100 Continue', underIt: '100 Continue, then 200' });
  });

  it('limits wrong tokens per client address: 401 ten times, then 429 with Retry-After, logged without the guess and counted', async () => {
    // From an address of its own (loopback is a /8), so that the rest of the suite keeps its own budget.
    const attacker = '127.0.0.3';
    const statuses: number[] = [];
    let retryAfter: string | undefined;
    const began = performance.now();
    for (let i = 0; i < 300; i++) {
      const guess = `wrong-guess-${i}-abcdefghijkl`;
      const answer = await send('/api/deployments', { headers: { authorization: `Bearer ${guess}` }, localAddress: attacker });
      statuses.push(answer.status);
      if (answer.status === 429) retryAfter = String(answer.headers['retry-after']);
    }
    const gitAnswer = await send('/git/functions.git/info/refs?service=git-upload-pack', {
      headers: { authorization: `Basic ${Buffer.from('fnix:another-wrong-guess-xyz').toString('base64')}` },
      localAddress: attacker,
    });
    // Even the right token waits now, from that address; from another it is served.
    const right = await send('/api/deployments', { headers: { authorization: `Bearer ${TOKEN}` }, localAddress: attacker });
    const elsewhere = await send('/api/deployments', { headers: { authorization: `Bearer ${TOKEN}` }, localAddress: '127.0.0.4' });
    const elapsed = performance.now() - began;
    expect(statuses.slice(0, 10)).toEqual(Array(10).fill(401));
    expect(statuses.slice(10).every((status) => status === 429)).toBe(true);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect(gitAnswer.status).toBe(429);
    expect(right.status).toBe(429);
    expect(JSON.parse(right.body).error.code).toBe('AUTH_RATE_LIMITED');
    expect(elsewhere.status).toBe(200);
    // A request with no credentials is not a failure (git asks without them first).
    expect((await send('/api/deployments', { localAddress: '127.0.0.5' })).status).toBe(401);
    const output = main.output();
    expect(output.split('a request came with a wrong token').length - 1).toBe(10);
    expect(output).toContain('too many wrong tokens from one client');
    expect(output).not.toContain('wrong-guess-');
    const metrics = (await send('/metrics')).body;
    expect(metrics).toMatch(/^fnix_auth_failures_total\{route="api"\} 10$/m);
    expect(Number(/^fnix_auth_refused_total\{route="api"\} (\d+)$/m.exec(metrics)?.[1])).toBe(291);
    expect(metrics).toMatch(/^fnix_auth_refused_total\{route="git"\} 1$/m);
    await report('wrong tokens', {
      attempts: 301,
      answered401: 10,
      answered429: 291,
      retryAfterSeconds: Number(retryAfter),
      logged: 10,
      allWithinMs: Math.round(elapsed),
    });
  });

  it('refuses a state folder whose path holds a colon at start, naming it', async () => {
    const result = await execa('node', [...GATEWAY_NODE_FLAGS, '--import', 'tsx', 'gateway/main.ts'], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
      env: { FNIX_STATE_DIR: join(work, 'state:1'), FNIX_PORT: '0' },
      reject: false,
      all: true,
    });
    expect(result.exitCode).toBe(1);
    expect(result.all).toContain(`fnix could not start: FNIX_STATE_DIR is ${join(work, 'state:1')}, which holds a ':'`);
    await report('a colon in FNIX_STATE_DIR', { start: 'refused, naming the variable and the path', exitCode: 1 });
  });

  it('follows an open-files limit lowered under it (prlimit), keeping its own reserve', async () => {
    await execa('prlimit', ['--pid', String(main.child.pid), '--nofile=1024:1024']);
    const began = performance.now();
    await waitUntil(() => main.output().includes('the open-files limit changed'), 15_000, 'the new limit in the log');
    const metrics = (await send('/metrics')).body;
    expect(metrics).toMatch(/^fnix_connections_max 640$/m); // 1024 less the 384 kept
    expect((await send('/fn/hello')).status).toBe(200);
    await report('open-files limit lowered under the gateway', {
      openFilesLimit: 1024,
      maxConnections: 640,
      followedAfterMs: Math.round(performance.now() - began),
    });
  });

  it('drains on SIGHUP as on SIGTERM: the running invocation finishes, every container goes, and so do the pid file and run/', async () => {
    const running = send('/fn/sleeper');
    await waitUntil(async () => (await pidsWithEnv('FNIX_FUNCTION', 'sleeper')).length >= 1, 10_000, 'the invocation to run');
    const began = performance.now();
    main.child.kill('SIGHUP');
    const finished = await running;
    const result = await main.child;
    const drainMs = performance.now() - began;
    expect(finished).toMatchObject({ status: 200, body: 'slept\n' });
    expect(result.exitCode).toBe(0);
    expect(main.output()).toMatch(/shutting down signal=SIGHUP/);
    const containers = (await execa('podman', ['ps', '--all', '--filter', `label=${INSTANCE_LABEL}=${instanceOf(stateDir)}`, '--format', '{{.Names}}'])).stdout;
    expect(containers).toBe('');
    await expect(access(join(stateDir, 'fnix.pid'))).rejects.toThrow();
    expect(await readdir(join(stateDir, 'run'))).toEqual([]);
    await report('SIGHUP', { runningInvocation: 'finished (200)', containersLeft: 0, pidFile: 'removed', runFolders: 0, drainMs: Math.round(drainMs) });
  });
});
