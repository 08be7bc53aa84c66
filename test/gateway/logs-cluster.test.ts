/**
 * @module
 * The records API gathered across a cluster (gateway/routes/logs.ts, logs-cluster.ts, cluster-fetch.ts),
 * without Podman: three real HTTP servers on 127.0.0.1, each serving the records routes of a real
 * RecordStore in a temporary folder (lines and records written by the store's own API), the real token
 * guard, and a fake ClusterView listing them. Checked: the merge's order, labels and limit; `node=`,
 * `local=1` (and its token); members that are down (a closed port, a server that never answers) named
 * within the timeout; an answer over the byte bound cut and named; a follow merging lines written on
 * two nodes after it began, an upstream that ends or leaves the cluster announced, SSE, and the
 * client's going closing the upstream requests; an invocation found on another node, and 404 naming
 * who did not answer.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import type { ClusterMember, ClusterView } from '../../cluster/view.ts';
import { FailureLimiter } from '../../gateway/auth/failure-limiter.ts';
import { TokenGuard } from '../../gateway/auth/guard.ts';
import { TokenCheck } from '../../gateway/auth/token.ts';
import { errorResponse, toFnixError } from '../../gateway/errors.ts';
import type { GatewayMetrics } from '../../gateway/metrics/metrics.ts';
import { type ClusterLogsOptions, merge } from '../../gateway/routes/logs-cluster.ts';
import { createLogsApi } from '../../gateway/routes/logs.ts';
import { silentLogger } from '../../runtime/log.ts';
import { RecordStore } from '../../runtime/records/store.ts';
import type { InvocationRecord } from '../../runtime/records/types.ts';

const TOKEN = 'the-cluster-token-0123';
const T0 = Date.parse('2026-12-02T01:00:00.000Z');
const metrics = { authFailed: () => {}, authRefused: () => {} } as unknown as GatewayMetrics;

/** One node: its store, its server, and the follow requests its server saw end. */
interface Node {
  name: string;
  url: string;
  store: RecordStore;
  server: Server;
  stateDir: string;
  /** Follow requests (`follow=1`) received, and those whose connection closed. */
  follows: { opened: number; closed: number };
}

let nodes: Node[] = [];
let members: ClusterMember[] = [];
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  nodes = [];
  members = [];
});

function member(name: string, url: string): ClusterMember {
  return { name, url, builderEligible: true, since: new Date(T0).toISOString() };
}

function viewOf(self: string): ClusterView {
  return { self, members: () => members, builder: () => undefined, isBuilder: () => false, stale: () => false };
}

/** Starts `names` as nodes of one cluster, each listed as a member. */
async function startCluster(names: string[], options: Partial<ClusterLogsOptions> = {}): Promise<Node[]> {
  for (const name of names) {
    const stateDir = await mkdtemp(join(tmpdir(), `fnix-logs-cluster-${name}-`));
    const store = RecordStore.open({ stateDir, flushMs: 20 });
    const guard = new TokenGuard({ token: new TokenCheck(TOKEN), limiter: new FailureLimiter({ burst: 100 }), log: silentLogger, metrics });
    const app = new Hono();
    const registry = { list: () => [{ name: 'hello' }] } as never;
    app.route(
      '/api',
      createLogsApi({ store, registry, token: guard, log: silentLogger, cluster: { view: viewOf(name), token: TOKEN, membershipCheckMs: 100, ...options } }),
    );
    app.onError((error) => errorResponse(toFnixError(error)));
    const server = createAdaptorServer({ fetch: app.fetch }) as Server;
    const follows = { opened: 0, closed: 0 };
    server.on('request', (request, response) => {
      if (!request.url?.includes('follow=1')) return;
      follows.opened += 1;
      response.on('close', () => {
        follows.closed += 1;
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const node: Node = { name, url, store, server, stateDir, follows };
    nodes.push(node);
    members.push(member(name, url));
    cleanups.push(async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      store.close();
      await rm(stateDir, { recursive: true, force: true });
    });
  }
  return nodes;
}

/** A port nothing listens on (bound, then closed). */
async function closedPort(): Promise<string> {
  const server = createHttpServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}

/** A server that takes connections and never answers. */
async function silentServer(): Promise<string> {
  const sockets = new Set<Socket>();
  const server: TcpServer = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function get(node: Node, path: string, init: { token?: string | null; headers?: Record<string, string>; signal?: AbortSignal } = {}) {
  const { token = TOKEN, headers = {}, signal } = init;
  return fetch(`${node.url}${path}`, { headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...headers }, signal });
}

function line(store: RecordStore, offsetMs: number, text: string, invocationId: string | null = null): void {
  store.line({ function: 'hello', stream: 'stderr', line: text, time: T0 + offsetMs, invocationId });
}

function record(id: string, offsetMs: number): InvocationRecord {
  return {
    id,
    function: 'hello',
    version: 'v1',
    deployment: null,
    kind: 'http',
    startedAt: new Date(T0 + offsetMs).toISOString(),
    durationMs: 3,
    outcome: 'OK',
    status: 200,
    exitCode: 0,
    signal: null,
    bytesIn: 0,
    bytesOut: 2,
    cold: false,
    instance: null,
    container: 'c',
  };
}

/** Reads a streaming answer's NDJSON values (or SSE text) as they come. */
class Reader {
  readonly values: Record<string, unknown>[] = [];
  text = '';
  #waiters: (() => void)[] = [];
  ended = false;

  constructor(response: Response) {
    void (async () => {
      const decoder = new TextDecoder();
      let pending = '';
      try {
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          const text = decoder.decode(chunk, { stream: true });
          this.text += text;
          pending += text;
          let newline = pending.indexOf('\n');
          while (newline >= 0) {
            const piece = pending.slice(0, newline).trim();
            pending = pending.slice(newline + 1);
            if (piece.startsWith('{')) this.values.push(JSON.parse(piece));
            newline = pending.indexOf('\n');
          }
          this.#wake();
        }
      } catch {
        // The test aborted it.
      }
      this.ended = true;
      this.#wake();
    })();
  }

  /** Waits until `test` holds of what was read, at most `ms`. */
  async until(test: () => boolean, ms = 3000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!test()) {
      if (Date.now() > deadline) throw new Error(`not seen within ${ms} ms; read so far:\n${this.text}`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  #wake(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }
}

async function until(test: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`not true within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('gathering lines and records', () => {
  it("merges every node's lines by time, then node, then their order; labels each; applies limit after the merge", async () => {
    const [n1, n2, n3] = await startCluster(['n1', 'n2', 'n3']);
    line(n1!.store, 1000, 'a1');
    line(n1!.store, 3000, 'a3');
    line(n1!.store, 3000, 'a3 again');
    line(n2!.store, 2000, 'b2');
    line(n2!.store, 3000, 'b3');
    line(n3!.store, 500, 'c0');
    const answer = await (await get(n1!, '/api/functions/hello/logs?limit=5')).json();
    expect(answer.missing).toEqual([]);
    expect(answer.lines.map((l: { node: string; line: string }) => `${l.node} ${l.line}`)).toEqual(['n1 a1', 'n2 b2', 'n1 a3', 'n1 a3 again', 'n2 b3']);
    expect(answer.lines[0]).toEqual({
      time: new Date(T0 + 1000).toISOString(),
      function: 'hello',
      invocationId: null,
      instance: null,
      stream: 'stderr',
      line: 'a1',
      node: 'n1',
    });
    // The same from another node; and every line without a limit.
    const fromN3 = await (await get(n3!, '/api/functions/hello/logs')).json();
    expect(fromN3.lines.map((l: { node: string; line: string }) => `${l.node} ${l.line}`)).toEqual([
      'n3 c0',
      'n1 a1',
      'n2 b2',
      'n1 a3',
      'n1 a3 again',
      'n2 b3',
    ]);
    // since and invocation reach the other nodes too.
    line(n2!.store, 4000, 'b4', 'inv-b');
    const since = new Date(T0 + 2500).toISOString();
    const later = await (await get(n1!, `/api/functions/hello/logs?since=${since}`)).json();
    expect(later.lines.map((l: { line: string }) => l.line)).toEqual(['a3', 'a3 again', 'b3', 'b4']);
    const one = await (await get(n1!, '/api/functions/hello/logs?invocation=inv-b')).json();
    expect(one.lines.map((l: { node: string; line: string }) => `${l.node} ${l.line}`)).toEqual(['n2 b4']);
  });

  it('node= asks that node alone; local=1 answers from this node alone and still needs the token', async () => {
    const [n1, n2] = await startCluster(['n1', 'n2']);
    line(n1!.store, 1000, 'a1');
    line(n2!.store, 2000, 'b2');
    const only2 = await (await get(n1!, '/api/functions/hello/logs?node=n2')).json();
    expect(only2).toEqual({ lines: [expect.objectContaining({ line: 'b2', node: 'n2' })], missing: [] });
    const only1 = await (await get(n1!, '/api/functions/hello/logs?node=n1')).json();
    expect(only1.lines.map((l: { node: string }) => l.node)).toEqual(['n1']);
    const local = await (await get(n1!, '/api/functions/hello/logs?local=1')).json();
    expect(local).toEqual({ lines: [expect.objectContaining({ line: 'a1', node: 'n1' })] });

    const noToken = await get(n1!, '/api/functions/hello/logs?local=1', { token: null });
    expect(noToken.status).toBe(401);
    expect((await noToken.json()).error.code).toBe('UNAUTHORIZED');
    const wrongToken = await get(n1!, '/api/functions/hello/logs?local=1&follow=1', { token: 'not-the-token-at-all' });
    expect(wrongToken.status).toBe(401);
    expect((await get(n1!, '/api/invocations/x?local=1', { token: null })).status).toBe(401);

    const unknown = await get(n1!, '/api/functions/hello/logs?node=n9');
    expect(unknown.status).toBe(400);
    const body = await unknown.json();
    expect(body.error.code).toBe('BAD_REQUEST');
    expect(body.error.message).toContain('the members now are n1, n2');
  });

  it('merges invocation records newest first, labelled, with the limit after the merge', async () => {
    const [n1, n2] = await startCluster(['n1', 'n2']);
    n1!.store.record(record('a', 1000));
    n1!.store.record(record('c', 3000));
    n2!.store.record(record('b', 2000));
    n2!.store.record(record('d', 3000));
    const answer = await (await get(n2!, '/api/functions/hello/invocations?limit=3')).json();
    expect(answer.missing).toEqual([]);
    expect(answer.invocations.map((r: { id: string; node: string }) => `${r.node} ${r.id}`)).toEqual(['n1 c', 'n2 d', 'n2 b']);
    const local = await (await get(n2!, '/api/functions/hello/invocations?local=1')).json();
    expect(local.invocations.map((r: { id: string; node: string }) => `${r.node} ${r.id}`)).toEqual(['n2 d', 'n2 b']);
  });

  it('names a member that is down (closed port) and one that never answers, within the timeout', async () => {
    const [n1, n2] = await startCluster(['n1', 'n2']);
    members.push(member('n4', await closedPort()), member('n5', await silentServer()));
    line(n1!.store, 1000, 'a1');
    line(n2!.store, 2000, 'b2');
    const began = Date.now();
    const answer = await (await get(n1!, '/api/functions/hello/logs')).json();
    const took = Date.now() - began;
    expect(took).toBeGreaterThanOrEqual(1900);
    expect(took).toBeLessThan(3500);
    expect(answer.lines.map((l: { node: string; line: string }) => `${l.node} ${l.line}`)).toEqual(['n1 a1', 'n2 b2']);
    expect(answer.missing).toEqual([
      { node: 'n4', error: expect.stringContaining('ECONNREFUSED') },
      { node: 'n5', error: 'no answer within 2 s' },
    ]);
    // Only the closed port: no waiting at all.
    members.pop();
    const fast = Date.now();
    const again = await (await get(n1!, '/api/functions/hello/invocations')).json();
    expect(Date.now() - fast).toBeLessThan(1000);
    expect(again.missing).toEqual([{ node: 'n4', error: expect.stringContaining('ECONNREFUSED') }]);
  });

  it("cuts a member's answer past the byte bound, and names it", async () => {
    const [n1, n2] = await startCluster(['n1', 'n2'], { maxAnswerBytes: 4096 });
    line(n1!.store, 0, 'small');
    for (let i = 0; i < 100; i++) line(n2!.store, i, `line ${i} ${'x'.repeat(100)}`);
    const answer = await (await get(n1!, '/api/functions/hello/logs')).json();
    expect(answer.lines.map((l: { node: string }) => l.node)).toEqual(['n1']);
    expect(answer.missing).toEqual([{ node: 'n2', error: 'its answer passed 4096 bytes and was cut: ask for less (limit=, since=)' }]);
  });

  it('answers 404 FUNCTION_NOT_FOUND only when no node that answered knows the function, naming those that did not', async () => {
    const [n1, n2] = await startCluster(['n1', 'n2']);
    n2!.store.line({ function: 'gone-fn', stream: 'stderr', line: 'left behind', time: T0 });
    n2!.store.flush(); // knows() counts what is written
    const found = await (await get(n1!, '/api/functions/gone-fn/logs')).json();
    expect(found.lines).toEqual([expect.objectContaining({ node: 'n2', line: 'left behind' })]);
    members.push(member('n4', await closedPort()));
    const missing = await get(n1!, '/api/functions/nothing/logs');
    expect(missing.status).toBe(404);
    const body = await missing.json();
    expect(body.error.code).toBe('FUNCTION_NOT_FOUND');
    expect(body.error.missing).toEqual([{ node: 'n4', error: expect.stringContaining('ECONNREFUSED') }]);
  });
});

describe('one invocation', () => {
  it('is found on the node that has it, with that node; 404 says which nodes did not answer', async () => {
    const [n1, n2, n3] = await startCluster(['n1', 'n2', 'n3']);
    n2!.store.record(record('inv-2', 1000));
    line(n2!.store, 1000, 'from n2', 'inv-2');
    n1!.store.record(record('inv-1', 1000));
    const answer = await (await get(n1!, '/api/invocations/inv-2')).json();
    expect(answer.node).toBe('n2');
    expect(answer.invocation).toMatchObject({ id: 'inv-2', node: 'n2' });
    expect(answer.lines).toEqual([expect.objectContaining({ line: 'from n2', node: 'n2' })]);
    // Found here: labelled with this node.
    expect((await (await get(n3!, '/api/invocations/inv-1')).json()).node).toBe('n1');
    expect((await (await get(n1!, '/api/invocations/inv-1')).json()).node).toBe('n1');

    members.push(member('n4', await closedPort()));
    const none = await get(n1!, '/api/invocations/nope');
    expect(none.status).toBe(404);
    const body = await none.json();
    expect(body.error.code).toBe('INVOCATION_NOT_FOUND');
    expect(body.error.invocationId).toBe('nope');
    expect(body.error.missing).toEqual([{ node: 'n4', error: expect.stringContaining('ECONNREFUSED') }]);
    expect(body.error.message).toMatch(
      /^no invocation "nope" is recorded on any node: it is still running, or older than the records kept \(docs\/logs.md\); n4 did not answer \(connect ECONNREFUSED [\d.:]+\), and may have it$/,
    );
    // local=1: this node alone.
    const local = await get(n1!, '/api/invocations/inv-2?local=1');
    expect(local.status).toBe(404);
    expect((await local.json()).error.message).toMatch(/^no invocation "inv-2" is recorded on n1: /);
    expect((await get(n1!, '/api/invocations/inv-2?node=n2')).status).toBe(200);
  });
});

describe('following', () => {
  it('merges the recent lines of every node, then lines written on two nodes after it began, labelled; an upstream that ends is announced', async () => {
    const [n1, n2, n3] = await startCluster(['n1', 'n2', 'n3']);
    line(n1!.store, 1000, 'a1');
    line(n2!.store, 500, 'b0');
    line(n3!.store, 2000, 'c2');
    const controller = new AbortController();
    const response = await get(n1!, '/api/functions/hello/logs?follow=1&limit=2', { signal: controller.signal });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/x-ndjson');
    const reader = new Reader(response);
    await reader.until(() => reader.values.length >= 2);
    expect(reader.values.map((v) => `${v['node']} ${v['line']}`)).toEqual(['n1 a1', 'n3 c2']);

    line(n2!.store, 5000, 'b5 new');
    line(n1!.store, 5000, 'a5 new');
    await reader.until(() => reader.values.length >= 4);
    expect(
      reader.values
        .slice(2)
        .map((v) => `${v['node']} ${v['line']}`)
        .sort(),
    ).toEqual(['n1 a5 new', 'n2 b5 new']);

    // n2's records close (its gateway stops): its follow ends, and that is said in the stream.
    n2!.store.close();
    await reader.until(() => reader.values.some((v) => v['event'] === 'node-gone'));
    expect(reader.values.at(-1)).toEqual({ event: 'node-gone', node: 'n2', error: 'its stream ended: the node stopped, or its records closed' });
    // The others go on.
    line(n3!.store, 6000, 'c6 new');
    await reader.until(() => reader.values.some((v) => v['line'] === 'c6 new' && v['node'] === 'n3'));

    // The client goes: the upstream requests are closed.
    expect(n3!.follows).toEqual({ opened: 1, closed: 0 });
    controller.abort();
    await until(() => n3!.follows.closed === 1);
    expect(n1!.follows.closed).toBe(1);
  });

  it('announces a member that is down or leaves the cluster, in SSE too, and keeps following the others', async () => {
    const [n1, n2, n3] = await startCluster(['n1', 'n2', 'n3']);
    members.push(member('n4', await closedPort()));
    line(n1!.store, 1000, 'a1');
    const controller = new AbortController();
    const response = await get(n1!, '/api/functions/hello/logs?follow=1', { signal: controller.signal, headers: { accept: 'text/event-stream' } });
    expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const reader = new Reader(response);
    await reader.until(() => reader.text.includes('event: node-gone'));
    expect(reader.text).toContain(
      `data: ${JSON.stringify({ time: new Date(T0 + 1000).toISOString(), function: 'hello', invocationId: null, instance: null, stream: 'stderr', line: 'a1', node: 'n1' })}\n\n`,
    );
    expect(reader.text).toMatch(/event: node-gone\ndata: \{"event":"node-gone","node":"n4","error":"connect ECONNREFUSED [^"]+"\}\n\n/);

    // n3 leaves the membership (its lease ended) while its connection stays open.
    members = members.filter((m) => m.name !== 'n3');
    await reader.until(() => reader.text.includes('"node":"n3","error":"it left the cluster'));
    await until(() => n3!.follows.closed === 1);
    line(n2!.store, 3000, 'b3 new');
    await reader.until(() => reader.text.includes('"line":"b3 new","node":"n2"'));
    controller.abort();
    await until(() => n2!.follows.closed === 1);
  });

  it('with node=, follows that node alone, and ends once it is gone', async () => {
    const [n1, n2] = await startCluster(['n1', 'n2']);
    line(n1!.store, 1000, 'a1');
    line(n2!.store, 1000, 'b1');
    const response = await get(n1!, '/api/functions/hello/logs?follow=1&node=n2');
    const reader = new Reader(response);
    await reader.until(() => reader.values.length >= 1);
    line(n2!.store, 2000, 'b2 new');
    await reader.until(() => reader.values.length >= 2);
    n2!.store.close();
    await reader.until(() => reader.ended);
    expect(reader.values.map((v) => v['line'] ?? v['event'])).toEqual(['b1', 'b2 new', 'node-gone']);
  });

  it('local=1 sends the recent lines, a live marker, then new lines, labelled', async () => {
    const [n1] = await startCluster(['n1', 'n2']);
    line(n1!.store, 1000, 'a1');
    const controller = new AbortController();
    const reader = new Reader(await get(n1!, '/api/functions/hello/logs?follow=1&local=1', { signal: controller.signal }));
    await reader.until(() => reader.values.length >= 2);
    line(n1!.store, 2000, 'a2');
    await reader.until(() => reader.values.length >= 3);
    expect(reader.values.map((v) => `${v['node'] ?? '-'} ${v['line'] ?? v['event']}`)).toEqual(['n1 a1', '- live', 'n1 a2']);
    controller.abort();
  });
});

describe('merge', () => {
  it('orders by time, then node, then the order on the node, and keeps the last (or first) limit', () => {
    const parts = [
      {
        node: 'b',
        items: [
          { t: '2026-01-01T00:00:01.000Z', n: 1 },
          { t: '2026-01-01T00:00:01.000Z', n: 2 },
        ],
      },
      {
        node: 'a',
        items: [
          { t: '2026-01-01T00:00:01.000Z', n: 3 },
          { t: '2026-01-01T00:00:02.000Z', n: 4 },
        ],
      },
    ];
    const order = (items: { n: number; node: string }[]) => items.map((i) => `${i.node}${i.n}`);
    expect(order(merge(parts, (i) => i.t, false, 10))).toEqual(['a3', 'b1', 'b2', 'a4']);
    expect(order(merge(parts, (i) => i.t, false, 2))).toEqual(['b2', 'a4']);
    expect(order(merge(parts, (i) => i.t, true, 3))).toEqual(['a4', 'a3', 'b1']);
  });
});
