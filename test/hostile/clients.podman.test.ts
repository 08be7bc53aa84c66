/**
 * @module
 * Hostile clients against a real gateway: bodies over the limit (by Content-Length, chunked, or with a
 * Content-Length that lies), slow clients, more requests than the pool can run, function names made to
 * escape, and WebSocket abuse. `hello` is measured alongside each.
 */
import { connect } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { perInvocationExamples, functionsFrom, startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { waitUntil } from '../helpers/processes.ts';
import { openSession } from '../helpers/session-client.ts';
import { alongside, HOSTILE_DIR, report } from './helpers.ts';

const MAX_BODY = 1024 * 1024;
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let gateway: TestGateway;

beforeAll(async () => {
  gateway = await startTestGateway({
    functionsDir: await functionsFrom(await perInvocationExamples(), HOSTILE_DIR),
    maxBody: MAX_BODY,
    poolSize: 2,
    maxContainers: 4,
    queueTimeoutMs: 2000,
    headersTimeoutMs: 2000,
    allowedHosts: ['fnix.test', '.apps.test'],
  });
});
afterAll(async () => {
  await gateway?.close();
});

/** The memory this process (the gateway's included) keeps, after a full GC: not the garbage of a flood. */
function retained(): number {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
  const { heapUsed, arrayBuffers } = process.memoryUsage();
  return heapUsed + arrayBuffers;
}

/**
 * Runs `script` in a Node process of its own, so that what the flooding client buffers is not counted as
 * the gateway's; resolves once it prints `sent`. `stop` kills it and waits until its invocation is over.
 */
async function floodFrom(script: string): Promise<{ stop(): Promise<void> }> {
  const client = execa('node', ['-e', script], { cwd: ROOT, reject: false });
  await new Promise<void>((resolve) => client.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('sent') && resolve()));
  return {
    async stop() {
      client.kill('SIGKILL');
      await client;
      await waitUntil(() => gateway.runtime.pool.stats().busy === 0, 5000, 'the flooded invocation to end');
    },
  };
}

/**
 * The most that retained() grew since `before`, in MiB, sampled every 500 ms for at least `minMs` and
 * until two readings agree within 0.5 MiB (15 s at most): what a flood costs while it lasts and after.
 */
async function peakGrowthMiB(before: number, minMs: number): Promise<number> {
  const began = performance.now();
  let peak = 0;
  let previous = Number.NaN;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const grown = (retained() - before) / 2 ** 20;
    peak = Math.max(peak, grown);
    const elapsed = performance.now() - began;
    if ((elapsed >= minMs && Math.abs(grown - previous) < 0.5) || elapsed > 15_000) return peak;
    previous = grown;
  }
}

/** Sends raw bytes on a fresh connection; resolves with everything the server answered. */
function raw(parts: Array<string | Buffer>, delayMs = 0): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(gateway.server.port, '127.0.0.1');
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString('latin1')));
    socket.on('error', () => resolve(answer));
    socket.on('close', () => resolve(answer));
    socket.on('connect', async () => {
      for (const part of parts) {
        if (socket.destroyed) break;
        socket.write(part);
        if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      }
    });
    setTimeout(() => reject(new Error('no answer within 20 s')), 20_000).unref();
  });
}

/** The largest byte count the `count` function logged so far. */
function countedBytes(): number {
  const counts = gateway.logs.flatMap((line) => [...line.matchAll(/count-bytes=(\d+)/g)].map((m) => Number(m[1])));
  return Math.max(0, ...counts);
}

describe('hostile clients', () => {
  it('answers 413 to bodies over the limit, however they come, and the function never gets more', async () => {
    const hello = await alongside(gateway.url);
    // The control: a body under the limit reaches the function whole, and the count says so.
    const small = await fetch(`${gateway.url}/fn/count`, { method: 'POST', body: Buffer.alloc(100_000, 0x61) });
    expect(await small.text()).toBe('100000\n');
    await waitUntil(() => countedBytes() === 100_000, 2000, 'the control count in the log');
    const logsAfterControl = gateway.logs.length;
    const big = Buffer.alloc(MAX_BODY + 4096, 0x61);
    const byLength = await fetch(`${gateway.url}/fn/count`, { method: 'POST', body: big });
    const chunked = await raw([
      'POST /fn/count HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n',
      ...Array.from({ length: 20 }, () => `10000\r\n${'b'.repeat(0x10000)}\r\n`),
      '0\r\n\r\n',
    ]);
    // Claims 10 bytes, sends far more: the surplus is never a body (Node takes it for a next request,
    // which is malformed: 400).
    const countsBefore = gateway.logs.length;
    const lying = await raw([`POST /fn/count HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n${'c'.repeat(2 * MAX_BODY)}`]);
    await new Promise((resolve) => setTimeout(resolve, 500)); // the functions' last log lines
    const lyingCounts = gateway.logs.slice(countsBefore).flatMap((line) => [...line.matchAll(/count-bytes=(\d+)/g)].map((m) => Number(m[1])));
    const figures = await hello.stop();
    expect(byLength.status).toBe(413);
    expect(((await byLength.json()) as any).error.code).toBe('BODY_TOO_LARGE');
    expect(chunked).toMatch(/^HTTP\/1\.1 413/);
    expect(lying).toMatch(/^HTTP\/1\.1 (200|400)/);
    expect(lyingCounts.every((n) => n <= 10)).toBe(true); // if it ran, it read the 10 bytes declared, no more
    // The chunked body's function was reading as it came, and was stopped at the limit.
    const overLimitCounts = gateway.logs.slice(logsAfterControl).flatMap((line) => [...line.matchAll(/count-bytes=(\d+)/g)].map((m) => Number(m[1])));
    const mostRead = Math.max(0, ...overLimitCounts);
    expect(mostRead).toBeLessThanOrEqual(MAX_BODY);
    expect(figures.failures).toBe(0);
    await report('bodies over the limit', {
      byLength: 413,
      chunked: 413,
      lyingContentLength: `answered ${lying.slice(9, 12)}, function read ${lyingCounts.join(',') || 'nothing'}`,
      control: '100000 of 100000 bytes read',
      mostReadOfAnOverLimitBody: mostRead,
      limit: MAX_BODY,
      hello: figures,
    });
  });

  it('cuts off clients that send their headers a byte a second, while others are served', async () => {
    const hello = await alongside(gateway.url);
    const began = performance.now();
    const request = `GET /fn/hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ${'a'.repeat(60)}\r\n\r\n`;
    const slow = await Promise.all(
      Array.from({ length: 5 }, () =>
        raw(
          [...request].map((c) => c),
          1000,
        ),
      ),
    );
    const elapsed = performance.now() - began;
    const figures = await hello.stop();
    for (const answer of slow) expect(answer).toMatch(/^(HTTP\/1\.1 408 |$)/); // 408, or a closed connection
    expect(elapsed).toBeLessThan(6000); // the 2 s header deadline, checked every second
    expect(figures.failures).toBe(0);
    expect(figures.count).toBeGreaterThan(10);
    await report('slow clients (headers at a byte a second)', { clients: 5, cutOffAfterMs: Math.round(elapsed), headersTimeoutMs: 2000, hello: figures });
  });

  it('answers every one of ten times more requests than the pool can run: served, or 503 with Retry-After', async () => {
    const total = 40; // maxContainers is 4
    const began = performance.now();
    const responses = await Promise.all(
      Array.from({ length: total }, () =>
        fetch(`${gateway.url}/fn/sleeper`).then(async (r) => ({
          status: r.status,
          retryAfter: r.headers.get('retry-after'),
          body: await r.text(),
          atMs: performance.now() - began,
        })),
      ),
    );
    const elapsed = performance.now() - began;
    const served = responses.filter((r) => r.status === 200);
    const refused = responses.filter((r) => r.status === 503);
    expect(served.length + refused.length).toBe(total);
    expect(served.every((r) => r.body === 'slept\n')).toBe(true);
    expect(refused.every((r) => r.retryAfter === '1' && JSON.parse(r.body).error.code === 'NO_CAPACITY')).toBe(true);
    expect(served.length).toBeGreaterThanOrEqual(4);
    // The refused ones waited in the queue for their deadline (FNIX_QUEUE_TIMEOUT, 2 s here) first.
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect(r.atMs).toBeGreaterThanOrEqual(1900);
    expect(elapsed).toBeLessThan(15_000);
    await report('ten times more requests than containers', {
      requests: total,
      maxContainers: 4,
      served: served.length,
      refused503: refused.length,
      lost: 0,
      allAnsweredWithinMs: Math.round(elapsed),
    });
  });

  it('refuses names made to escape with 404 before any container, Nix or filesystem work', async () => {
    const hello = await alongside(gateway.url);
    // The pool as it is between two of hello's requests (which go on meanwhile): read in the same turn
    // as the check, so that no hello request can start in between.
    const quietPool = async (what: string) => {
      let stats = gateway.runtime.pool.stats();
      await waitUntil(
        () => {
          stats = gateway.runtime.pool.stats();
          return stats.busy === 0 && stats.starting === 0;
        },
        10_000,
        what,
      );
      return stats;
    };
    const before = await quietPool('a quiet pool');
    const logsBefore = gateway.logs.length;
    const names = [
      '..%2f..%2fetc',
      '%2e%2e',
      '%2e%2e%2fhello',
      'hello%00',
      '-rf',
      '-hello',
      'a'.repeat(64),
      'HELLO',
      'hello.',
      '%252e%252e',
      '..',
      '../../etc/passwd',
    ];
    for (const name of names) {
      // Sent as written: a URL parser would resolve the dots before they reached the gateway.
      const answer = await raw([`GET /fn/${name} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`]);
      expect(answer, name).toMatch(/^HTTP\/1\.1 404/);
      expect(answer, name).toMatch(/"code":"(FUNCTION_NOT_FOUND|ROUTE_NOT_FOUND)"/);
    }
    const after = await quietPool('a quiet pool after the names');
    const figures = await hello.stop();
    // No container was taken: none specialised, none started, and nothing but hello invoked.
    expect(after.idle).toBe(before.idle);
    expect(after.warm).toBe(before.warm);
    expect(after.total).toBe(before.total);
    const invoked = gateway.logs.slice(logsBefore).flatMap((line) => [...line.matchAll(/INFO invocation function=(\S+)/g)].map((m) => m[1]));
    expect(invoked.filter((name) => name !== 'hello')).toEqual([]);
    expect(figures.failures).toBe(0);
    await report('names made to escape', { names: names.length, answered: '404 JSON', containersTaken: 0, hello: figures });
  });

  it('refuses requests for a host name it was not told, so that DNS rebinding reaches nothing', async () => {
    const hello = await alongside(gateway.url);
    const port = gateway.server.port;
    /** The status of `request` sent with `Host: host`, and the error code if any. */
    const ask = (host: string, request: string) =>
      new Promise<{ status: number; code: string | undefined }>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1');
        let answer = '';
        const done = () => {
          socket.destroy();
          resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(answer)?.[1]), code: /"code":"([A-Z_]+)"/.exec(answer)?.[1] });
        };
        socket.on('data', (chunk) => {
          answer += chunk.toString('latin1');
          // A 101 is all there is to see of a session; an error ends with its JSON body.
          if (answer.startsWith('HTTP/1.1 101') || /\r\n\r\n[\s\S]*\}\}/.test(answer)) done();
        });
        socket.on('end', done).on('error', reject);
        socket.write(`${request.replaceAll('HOST', host)}Connection: close\r\n\r\n`);
      });
    const requests = {
      invoke: 'GET /fn/hello HTTP/1.1\r\nHost: HOST\r\n',
      health: 'GET /healthz HTTP/1.1\r\nHost: HOST\r\n',
      metrics: 'GET /metrics HTTP/1.1\r\nHost: HOST\r\n',
      terminal: 'GET /sessions/shell HTTP/1.1\r\nHost: HOST\r\n',
      session:
        'GET /sessions/hello HTTP/1.1\r\nHost: HOST\r\nOrigin: http://HOST\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n',
    };
    // A page on a rebound name: the browser thinks it is same-origin; its Host says otherwise.
    for (const host of [`rebound.example:${port}`, `localhost.rebound.example:${port}`, `127.0.0.1.nip.io:${port}`, `evil.apps.test.example:${port}`]) {
      for (const [what, request] of Object.entries(requests)) {
        expect(await ask(host, request), `${what} for ${host}`).toEqual({ status: 403, code: 'HOST_NOT_ALLOWED' });
      }
    }
    // IP addresses, localhost, and the names in FNIX_ALLOWED_HOSTS are served.
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `shell.localhost:${port}`, `fnix.test:${port}`, `apps.test`, `a.apps.test:${port}`]) {
      expect((await ask(host, requests.invoke)).status, host).toBe(200);
      expect((await ask(host, requests.session)).status, host).toBe(101);
    }
    await waitUntil(() => gateway.runtime.pool.stats().busy === 0, 5000, 'every session to end');
    const figures = await hello.stop();
    expect(figures.failures).toBe(0);
    await report('DNS rebinding', {
      refused: '403 HOST_NOT_ALLOWED on /fn, /healthz, /metrics, /sessions (page and upgrade)',
      served: 'IP addresses, localhost, FNIX_ALLOWED_HOSTS',
      hello: figures,
    });
  });

  it('keeps a body of a million one-byte chunks small in memory, while its function does not read it', async () => {
    const hello = await alongside(gateway.url);
    const before = retained();
    // long-sleep never reads its stdin: the body waits in the gateway. The client is a process of its
    // own, so that what it buffers is not counted as the gateway's.
    const chunks = 1_000_000; // under the 1 MiB limit: all of it is kept for the function
    const client = await floodFrom(`
      const socket = require('node:net').connect(${gateway.server.port}, '127.0.0.1');
      socket.write('POST /fn/long-sleep HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n' + '1\\r\\nx\\r\\n'.repeat(${chunks}) + '0\\r\\n\\r\\n', () => console.log('sent'));
    `);
    // Parsing a million chunks takes the gateway a few seconds.
    const grownMiB = await peakGrowthMiB(before, 6000);
    await client.stop();
    const figures = await hello.stop();
    // Queued as one view per chunk, the million chunks held about 140 MiB; copied into blocks, about 40
    // (what is left is Node's and the stream adapters' own per-chunk cost while they parse), at the most.
    expect(grownMiB).toBeLessThan(72);
    expect(figures.failures).toBe(0);
    await report('a million one-byte body chunks', { chunks, retainedMiB: Math.round(grownMiB * 10) / 10, hello: figures });
  });

  it('keeps a flood of one-byte stdin frames small in memory, while its command does not read them', async () => {
    const hello = await alongside(gateway.url);
    const before = retained();
    // long-sleep never reads its stdin: everything sent waits in the gateway, up to its 1 MiB queue.
    // The client is a process of its own, so that what it buffers is not counted as the gateway's.
    const frames = 1_000_000;
    const client = await floodFrom(`
      const WebSocket = require('ws');
      const ws = new WebSocket(${JSON.stringify(`${gateway.url.replace('http', 'ws')}/sessions/long-sleep`)});
      ws.on('open', () => {
        const frame = Buffer.from([0, 0x78]);
        for (let i = 0; i < ${frames}; i++) ws.send(frame);
        console.log('sent');
      });
      ws.on('error', () => {});
    `);
    const grownMiB = await peakGrowthMiB(before, 2000);
    await client.stop();
    const figures = await hello.stop();
    expect(grownMiB).toBeLessThan(32);
    expect(figures.failures).toBe(0);
    await report('a million one-byte stdin frames', { frames, retainedMiB: Math.round(grownMiB * 10) / 10, hello: figures });
  });

  it('closes malformed, oversized and flooding WebSocket clients cleanly, and the gateway is unaffected', async () => {
    const hello = await alongside(gateway.url);
    // A flood of one-byte stdin frames to cat: all of them arrive, in order.
    const flood = await openSession(gateway.url, '/sessions/echo');
    const frames = 20_000;
    for (let i = 0; i < frames; i++) flood.send(0, 'x');
    flood.send(0);
    const floodClosed = await flood.closed;
    expect(floodClosed.status).toEqual({ exitCode: 0 });
    expect(flood.bytes(1).length).toBe(frames);
    // Malformed and oversized frames.
    const bad = await openSession(gateway.url, '/sessions/echo');
    bad.send(7, 'x');
    expect((await bad.closed).code).toBe(1008);
    const huge = await openSession(gateway.url, '/sessions/echo');
    huge.send(0, Buffer.alloc(2 * 1024 * 1024));
    expect((await huge.closed).code).toBe(1009);
    // Garbage that is not WebSocket at all, after the upgrade.
    const garbage = await raw(
      [
        'GET /sessions/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
        Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
      ],
      200,
    );
    expect(garbage).toMatch(/^HTTP\/1\.1 101/);
    await waitUntil(() => gateway.runtime.pool.stats().busy === 0, 5000, 'every session to end');
    const figures = await hello.stop();
    expect(figures.failures).toBe(0);
    await report('WebSocket abuse', { floodFrames: frames, flood: 'all echoed', unknownChannel: 1008, oversized: 1009, garbage: 'closed', hello: figures });
  });
});
