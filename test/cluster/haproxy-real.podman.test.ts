/**
 * @module
 * The generated configuration (cluster/haproxy.ts) in a real HAProxy (Debian's 2.6), on 127.0.0.1 with
 * random ports, in front of three small node:http servers standing in for the nodes: each answers
 * /healthz (200, or 503 when told), /cluster/builder (200 on the builder alone), and everything else
 * with its own name, and takes WebSocket upgrades. What is shown: `haproxy -c` accepts the file; one
 * function's requests and its session land on one node; twenty functions spread over more than one;
 * /git/ reaches the builder; /cluster/ is refused before any node sees it; a node whose /healthz says
 * 503 is out within 3 s, and only its functions move; a node that dies loses no GET sent after, and
 * a POST on a new connection is moved, and runs once.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { haproxyConfig } from '../../cluster/haproxy.ts';
import { freePort } from '../helpers/etcd.ts';
import { waitUntil } from '../helpers/processes.ts';

interface FakeNode {
  name: string;
  server: Server;
  url: string;
  healthy: boolean;
  builder: boolean;
  /** The paths it was asked for, checks aside. */
  seen: string[];
}

const NAMES = ['node-a', 'node-b', 'node-c'];
let dir: string;
let front: string;
let haproxy: ChildProcess | undefined;
let haproxyOutput = '';
const nodes: FakeNode[] = [];

async function startNode(name: string, builder: boolean): Promise<FakeNode> {
  const node: FakeNode = { name, server: createServer(), url: '', healthy: true, builder, seen: [] };
  node.server.on('request', (request, response) => {
    const path = request.url ?? '/';
    if (path === '/healthz') return void response.writeHead(node.healthy ? 200 : 503).end();
    if (path === '/cluster/builder') return void response.writeHead(node.builder ? 200 : 503).end();
    node.seen.push(path);
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ node: name, path }));
  });
  const sockets = new WebSocketServer({ noServer: true });
  node.server.on('upgrade', (request, socket, head) => {
    node.seen.push(request.url ?? '/');
    sockets.handleUpgrade(request, socket, head, (ws) => {
      ws.send(name);
      ws.on('message', (data) => ws.send(`${name}: ${data}`));
    });
  });
  await new Promise<void>((resolve) => node.server.listen(0, '127.0.0.1', resolve));
  node.url = `http://127.0.0.1:${(node.server.address() as AddressInfo).port}`;
  return node;
}

/** GET `path` through HAProxy: its status and the node that answered (undefined for HAProxy's own answers). */
async function get(path: string): Promise<{ status: number; node: string | undefined; body: string }> {
  const response = await fetch(`${front}${path}`);
  const body = await response.text();
  let node: string | undefined;
  try {
    node = (JSON.parse(body) as { node?: string }).node;
  } catch {}
  return { status: response.status, node, body };
}

/** POST `body` to `path` through HAProxy, on a connection of its own. */
function post(path: string, body: string): Promise<{ status: number; node: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const sent = request(`${front}${path}`, { method: 'POST', agent: false, headers: { 'content-length': String(Buffer.byteLength(body)) } }, (response) => {
      let text = '';
      response.on('data', (chunk: Buffer) => {
        text += chunk.toString();
      });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, node: JSON.parse(text).node, body: text }));
    });
    sent.on('error', reject);
    sent.end(body);
  });
}

/** The node that serves function `fn`. */
async function nodeOf(fn: string): Promise<string> {
  const { status, node } = await get(`/fn/${fn}`);
  expect(status).toBe(200);
  return node!;
}

const FUNCTIONS = Array.from({ length: 20 }, (_, i) => `fn-${i}`);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fnix-haproxy-'));
  for (const [i, name] of NAMES.entries()) nodes.push(await startNode(name, i === 0));
  const port = await freePort();
  front = `http://127.0.0.1:${port}`;
  const config = haproxyConfig({
    members: nodes.map((n) => ({ name: n.name, url: n.url, builderEligible: true })),
    bind: `127.0.0.1:${port}`,
  });
  await writeFile(join(dir, 'haproxy.cfg'), config);
  haproxy = spawn('haproxy', ['-f', join(dir, 'haproxy.cfg'), '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (chunk: Buffer) => {
    haproxyOutput += chunk.toString();
  };
  haproxy.stdout!.on('data', keep);
  haproxy.stderr!.on('data', keep);
  await waitUntil(
    async () => {
      try {
        return (await fetch(`${front}/healthz`)).status === 200;
      } catch {
        return false;
      }
    },
    5000,
    'HAProxy to answer',
  );
}, 20_000);

afterAll(async () => {
  if (haproxy?.pid !== undefined && haproxy.exitCode === null) {
    const exited = new Promise((resolve) => haproxy!.once('exit', resolve));
    process.kill(haproxy.pid, 'SIGTERM');
    const timer = setTimeout(() => haproxy?.pid !== undefined && process.kill(haproxy.pid, 'SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }
  for (const node of nodes) {
    node.server.closeAllConnections();
    await new Promise((resolve) => node.server.close(resolve));
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the generated configuration, in HAProxy', () => {
  it('is valid to haproxy -c', async () => {
    const checked = await execa('haproxy', ['-c', '-f', join(dir, 'haproxy.cfg')], { reject: false, all: true });
    expect(checked.all).toContain('Configuration file is valid');
    expect(checked.all).not.toMatch(/WARNING|ALERT/);
    expect(checked.exitCode).toBe(0);
  });

  it('sends every request for one function, and its WebSocket session, to one node', async () => {
    const home = await nodeOf('a');
    for (const path of ['/fn/a', '/fn/a/x', '/fn/a/y?z=1', '/fn/a/deep/er/path']) expect((await get(path)).node, path).toBe(home);
    const post = await fetch(`${front}/fn/a/x`, { method: 'POST', body: 'hello' });
    expect(((await post.json()) as { node: string }).node).toBe(home);
    // The session upgrade passes through HAProxy, to the same node, and carries messages both ways.
    const ws = new WebSocket(`${front.replace('http', 'ws')}/sessions/a`);
    const messages: string[] = [];
    ws.on('message', (data) => messages.push(String(data)));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.send('ping');
    await waitUntil(() => messages.length >= 2, 3000, 'the echo through HAProxy');
    expect(messages).toEqual([home, `${home}: ping`]);
    ws.close();
  });

  it('spreads different functions over more than one node', async () => {
    const homes = new Map<string, string>();
    for (const fn of FUNCTIONS) homes.set(fn, await nodeOf(fn));
    const counts = NAMES.map((name) => [...homes.values()].filter((n) => n === name).length);
    expect(counts.filter((c) => c > 0).length, `20 functions over the nodes: ${counts}`).toBeGreaterThan(1);
    // Stable: asked again, each is where it was.
    for (const fn of FUNCTIONS) expect(await nodeOf(fn)).toBe(homes.get(fn));
  });

  it('sends /git/ to the builder alone, once the checks have found it', async () => {
    // The servers start up; the two that are not the builder go down after two failed checks.
    await waitUntil(
      async () => (await Promise.all(Array.from({ length: 6 }, () => get('/git/fnix.git/info/refs')))).every((r) => r.node === 'node-a'),
      5000,
      '/git/ to reach node-a only',
    );
    for (let i = 0; i < 10; i++) expect((await get('/git/fnix.git/info/refs?service=git-receive-pack')).node).toBe('node-a');
  });

  it('refuses /cluster/ with 404, however it is spelled, before any node sees it', async () => {
    for (const path of ['/cluster/cache/nix-cache-info', '/cluster/builder', '/cluster', '//cluster/cache/x', '/%63luster/cache/x']) {
      const response = await fetch(`${front}${path}`);
      expect(response.status, path).toBe(404);
      expect(response.headers.get('x-fnix-error'), path).toBe('ROUTE_NOT_FOUND');
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe('ROUTE_NOT_FOUND');
    }
    for (const node of nodes) expect(node.seen.filter((p) => /cluster/.test(p))).toEqual([]);
  });

  it('takes out a node whose /healthz answers 503 within 3 s, moving its functions only', async () => {
    const homes = new Map<string, string>();
    for (const fn of FUNCTIONS) homes.set(fn, await nodeOf(fn));
    const sick = nodes.find((n) => [...homes.values()].includes(n.name) && !n.builder)!;
    const its = FUNCTIONS.filter((fn) => homes.get(fn) === sick.name);
    sick.healthy = false;
    const took = await waitUntil(async () => (await Promise.all(its.map(nodeOf))).every((n) => n !== sick.name), 5000, `${sick.name} to be taken out`);
    expect(took).toBeLessThan(3000);
    // Consistent hashing: the other functions stayed where they were.
    for (const fn of FUNCTIONS.filter((f) => !its.includes(f))) expect(await nodeOf(fn)).toBe(homes.get(fn));
    sick.healthy = true;
    await waitUntil(async () => (await nodeOf(its[0]!)) === sick.name, 5000, `${sick.name} to come back`);
  });

  it('moves the requests of a node that dies to the others, with no GET failed', async () => {
    const homes = new Map<string, string>();
    for (const fn of FUNCTIONS) homes.set(fn, await nodeOf(fn));
    const dead = nodes.find((n) => [...homes.values()].includes(n.name) && !n.builder)!;
    const its = FUNCTIONS.filter((fn) => homes.get(fn) === dead.name);
    dead.server.close();
    dead.server.closeAllConnections();
    // At once, before any check notices: each request that cannot connect is retried on another node.
    const started = performance.now();
    const answers = await Promise.all(its.flatMap((fn) => [get(`/fn/${fn}`), get(`/fn/${fn}/x`)]));
    for (const answer of answers) {
      expect(answer.status, answer.body).toBe(200);
      expect(answer.node).not.toBe(dead.name);
    }
    // A POST on a new connection is resent too (it could not be sent), and runs once.
    const posts = await Promise.all(its.map((fn) => post(`/fn/${fn}/once-${fn}`, 'body')));
    for (const answer of posts) {
      expect(answer.status, answer.body).toBe(200);
      expect(answer.node).not.toBe(dead.name);
    }
    for (const fn of its) expect(nodes.flatMap((n) => n.seen).filter((p) => p === `/fn/${fn}/once-${fn}`)).toHaveLength(1);
    // And on, while the checks take it out: every GET answered.
    while (performance.now() - started < 2500) {
      for (const answer of await Promise.all(its.map((fn) => get(`/fn/${fn}`)))) expect(answer.status, answer.body).toBe(200);
    }
    expect(haproxyOutput).toMatch(new RegExp(`fnix_nodes/${dead.name} is DOWN`));
  });
});
