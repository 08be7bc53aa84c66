/**
 * @module
 * Invocation records and log lines on a real gateway (real Podman): an HTTP invocation's record and
 * stderr lines; a failed one found from its error response's id, with its exit code and lines, also
 * after a restart on the same state folder; a session's record; a serve request's record with its
 * instance, and the instance's output lines; following a function's log as NDJSON and as server-sent
 * events; the since, limit, invocation and outcome filters; unknown ids and functions; the token;
 * the record of an invocation still running when the gateway process is stopped.
 */
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { type IncomingMessage, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RecordStore } from '../../runtime/records/store.ts';
import { startTestGateway, TEST_TOKEN, type TestGateway } from '../helpers/gateway.ts';
import { type MainProcess, startMain } from '../helpers/main-process.ts';
import { waitUntil } from '../helpers/processes.ts';
import { openSession } from '../helpers/session-client.ts';

const SERVE_FIXTURES = fileURLToPath(new URL('../fixtures/serve', import.meta.url));
/** The longest any wait on the gateway may take: generous, for a loaded machine. */
const PATIENCE_MS = 30_000;

/** The functions served, besides lab (a serve function at concurrency 1, test/fixtures/serve/lab). */
const FUNCTIONS: Record<string, string> = {
  // Says its query on stderr, and answers `ok`.
  talk: 'echo "said $QUERY_STRING" >&2; echo ok',
  fail: "echo 'about to fail' >&2; echo 'second line' >&2; exit 3",
  // A session: a line on stderr, then what the client types, back on stdout.
  chat: 'echo session-err >&2; read line; echo "got $line"',
  // Still running when the gateway stops.
  slow: 'echo slow-started >&2; sleep 60; echo done',
};

let gateway: TestGateway;
let functionsDir: string;
let stateDir: string;

const api = async (path: string, authorization = `Bearer ${TEST_TOKEN}`) => {
  const response = await fetch(`${gateway.url}/api${path}`, { headers: { authorization } });
  return { status: response.status, body: (await response.json()) as any };
};

const invoke = async (path: string) => {
  const response = await fetch(`${gateway.url}/fn/${path}`);
  return { status: response.status, id: response.headers.get('x-fnix-invocation-id') ?? '', text: await response.text() };
};

beforeAll(async () => {
  functionsDir = await mkdtemp(join(tmpdir(), 'fnix-records-functions-'));
  stateDir = await mkdtemp(join(tmpdir(), 'fnix-records-state-'));
  for (const [name, script] of Object.entries(FUNCTIONS)) {
    await mkdir(join(functionsDir, name));
    await writeFile(join(functionsDir, name, 'function.json'), JSON.stringify({ packages: ['busybox'], command: ['busybox', 'sh', '-c', script] }));
  }
  await cp(join(SERVE_FIXTURES, 'lab'), join(functionsDir, 'lab'), { recursive: true });
  gateway = await startTestGateway({ functionsDir, stateDir, queueTimeoutMs: PATIENCE_MS });
});
afterAll(async () => {
  await gateway?.close();
  await rm(functionsDir, { recursive: true, force: true });
  await rm(stateDir, { recursive: true, force: true });
});

describe('records of HTTP invocations', () => {
  it("keeps an invocation's record and its stderr lines", async () => {
    const { status, id, text } = await invoke('talk?hello=1');
    expect([status, text]).toEqual([200, 'ok\n']);
    const { body } = await api(`/invocations/${id}`);
    expect(body.invocation).toMatchObject({
      id,
      function: 'talk',
      kind: 'http',
      outcome: 'OK',
      status: 200,
      exitCode: 0,
      signal: null,
      bytesIn: 0,
      bytesOut: 3,
      instance: null,
    });
    expect(body.invocation).toMatchObject({
      version: expect.any(String),
      deployment: expect.any(String),
      cold: expect.any(Boolean),
      container: expect.any(String),
    });
    expect(body.invocation.durationMs).toBeGreaterThan(0);
    expect(Date.parse(body.invocation.startedAt)).toBeLessThanOrEqual(Date.now());
    expect(body.lines).toEqual([{ time: expect.any(String), function: 'talk', invocationId: id, instance: null, stream: 'stderr', line: 'said hello=1' }]);
  });

  it("leads from a failed invocation's error response to its record, exit code and lines", async () => {
    const response = await fetch(`${gateway.url}/fn/fail`);
    const error = (await response.json()) as any;
    expect(error.error.code).toBe('FUNCTION_FAILED');
    const id = response.headers.get('x-fnix-invocation-id')!;
    expect(id).toMatch(/\w/);
    const { status, body } = await api(`/invocations/${id}`);
    expect(status).toBe(200);
    expect(body.invocation).toMatchObject({ id, function: 'fail', outcome: 'FUNCTION_FAILED', status: response.status, exitCode: 3 });
    expect(body.lines.map((l: any) => l.line)).toEqual(['about to fail', 'second line']);
  });

  it('counts the request body in bytesIn', async () => {
    const response = await fetch(`${gateway.url}/fn/talk`, { method: 'POST', body: 'x'.repeat(1000) });
    await response.text();
    const { body } = await api(`/invocations/${response.headers.get('x-fnix-invocation-id')}`);
    expect(body.invocation.bytesIn).toBe(1000);
  });

  it('records a refusal before the start (BODY_TOO_LARGE) under the id the client got', async () => {
    // Refused by its Content-Length, before the body comes: none is sent.
    const answer = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(`${gateway.url}/fn/talk`, { method: 'POST', headers: { 'content-length': String(7 * 1024 * 1024) } }, resolve);
      req.on('error', reject);
      req.flushHeaders();
    });
    answer.resume();
    expect(answer.statusCode).toBe(413);
    const id = String(answer.headers['x-fnix-invocation-id']);
    answer.destroy();
    const { body } = await api(`/invocations/${id}`);
    expect(body.invocation).toMatchObject({ id, function: 'talk', kind: 'http', outcome: 'BODY_TOO_LARGE', status: 413, exitCode: null });
  });
});

describe('GET /api/functions/<name>/logs and /invocations', () => {
  it('gives the last lines oldest first, within limit, since and invocation', async () => {
    const first = await invoke('talk?n=1');
    const second = await invoke('talk?n=2');
    const last = (await api('/functions/talk/logs?limit=2')).body.lines.map((l: any) => l.line);
    expect(last).toEqual(['said n=1', 'said n=2']);
    expect((await api(`/functions/talk/logs?invocation=${first.id}`)).body.lines.map((l: any) => l.line)).toEqual(['said n=1']);
    expect((await api('/functions/talk/logs?since=1h')).body.lines.length).toBeGreaterThanOrEqual(3);
    const future = new Date(Date.now() + 3_600_000).toISOString();
    expect((await api(`/functions/talk/logs?since=${future}`)).body.lines).toEqual([]);
    const invocations = (await api('/functions/talk/invocations?limit=2')).body.invocations;
    expect(invocations.map((r: any) => r.id)).toEqual([second.id, first.id]);
    const failed = (await api('/functions/fail/invocations?outcome=FUNCTION_FAILED')).body.invocations;
    expect(failed.length).toBeGreaterThanOrEqual(1);
    expect((await api('/functions/fail/invocations?outcome=OK')).body.invocations).toEqual([]);
  });

  it('refuses bad parameters with 400 BAD_REQUEST', async () => {
    for (const query of ['since=yesterday', 'limit=0', 'limit=10001', 'invocation=../x']) {
      const { status, body } = await api(`/functions/talk/logs?${query}`);
      expect([query, status, body.error.code]).toEqual([query, 400, 'BAD_REQUEST']);
    }
  });

  it('answers 404 for an unknown invocation and an unknown function', async () => {
    const unknown = await api('/invocations/no-such-id');
    expect([unknown.status, unknown.body.error.code]).toEqual([404, 'INVOCATION_NOT_FOUND']);
    const fn = await api('/functions/no-such-function/logs');
    expect([fn.status, fn.body.error.code]).toEqual([404, 'FUNCTION_NOT_FOUND']);
  });

  it('needs the deploy token', async () => {
    for (const path of ['/functions/talk/logs', '/functions/talk/logs?follow=1', '/functions/talk/invocations', '/invocations/x']) {
      const { status, body } = await api(path, 'Bearer wrong-token-0123456789');
      expect([path, status, body.error.code]).toEqual([path, 401, 'UNAUTHORIZED']);
      expect((await fetch(`${gateway.url}/api${path}`)).status).toBe(401);
    }
  });
});

describe('records of sessions and serve functions', () => {
  it("keeps a session's record and its stderr", async () => {
    const session = await openSession(gateway.url, '/sessions/chat');
    await session.waitFor('', 1);
    session.send(0, 'hi\n');
    await session.waitFor('got hi');
    const { status } = await session.closed;
    expect(status).toEqual({ exitCode: 0 });
    const { body } = await api(`/invocations/${session.invocationId}`);
    expect(body.invocation).toMatchObject({ id: session.invocationId, function: 'chat', kind: 'session', outcome: 'OK', status: 101, exitCode: 0, bytesIn: 4 });
    expect(body.lines.map((l: any) => [l.stream, l.line])).toEqual([['stderr', 'session-err']]);
  });

  it("keeps a serve request's record with its instance, and the instance's output lines with the request's id", async () => {
    const { status, id } = await invoke('lab/log?text=marker-42');
    expect(status).toBe(200);
    // The lines come through the agent, the answer through the relay: they may land a moment apart.
    await waitUntil(async () => (await api(`/invocations/${id}`)).body.lines?.length === 2, PATIENCE_MS, "the instance's lines");
    const { body } = await api(`/invocations/${id}`);
    expect(body.invocation).toMatchObject({ id, function: 'lab', kind: 'serve', outcome: 'OK', status: 200, exitCode: null });
    expect(body.invocation.instance).toMatch(/^i-/);
    // lab runs at concurrency 1: the lines it wrote during the request carry the request's id.
    expect(body.lines.map((l: any) => [l.stream, l.line, l.instance])).toEqual(
      expect.arrayContaining([
        ['stdout', 'stdout says marker-42', body.invocation.instance],
        ['stderr', 'stderr says marker-42', body.invocation.instance],
      ]),
    );
    const logs = (await api('/functions/lab/logs?limit=1000')).body.lines;
    expect(logs.some((l: any) => l.line === 'stderr says marker-42' && l.invocationId === id)).toBe(true);
  });

  it("keeps a serve WebSocket's record", async () => {
    const { default: WebSocket } = await import('ws');
    const ws = new WebSocket(`${gateway.url.replace(/^http/, 'ws')}/fn/lab/ws`);
    let id = '';
    ws.on('upgrade', (response) => (id = String(response.headers['x-fnix-invocation-id'])));
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const echoed = new Promise((resolve) => ws.once('message', (data) => resolve(String(data))));
    ws.send('ping-1');
    expect(await echoed).toMatch(/: ping-1$/);
    ws.close();
    await waitUntil(async () => (await api(`/invocations/${id}`)).status === 200, PATIENCE_MS, 'the WebSocket record');
    const { body } = await api(`/invocations/${id}`);
    expect(body.invocation).toMatchObject({ id, function: 'lab', kind: 'websocket', outcome: 'OK', status: 101 });
    expect(body.invocation.instance).toMatch(/^i-/);
    expect(body.invocation.bytesIn).toBeGreaterThan(0);
    expect(body.invocation.bytesOut).toBeGreaterThan(0);
  });
});

/** Follows talk's log; resolves each `read` with the next chunk of text. */
async function follow(accept?: string) {
  const abort = new AbortController();
  const response = await fetch(`${gateway.url}/api/functions/talk/logs?follow=1&limit=1`, {
    headers: { authorization: `Bearer ${TEST_TOKEN}`, ...(accept ? { accept } : {}) },
    signal: abort.signal,
  });
  const reader = response.body!.getReader();
  let text = '';
  const until = async (needle: string) => {
    const deadline = Date.now() + PATIENCE_MS;
    while (!text.includes(needle)) {
      if (Date.now() > deadline) throw new Error(`the follower did not get ${JSON.stringify(needle)}; it has ${JSON.stringify(text.slice(-500))}`);
      const { value, done } = await reader.read();
      if (done) throw new Error(`the stream ended before ${JSON.stringify(needle)}`);
      text += Buffer.from(value).toString();
    }
    return text;
  };
  return { response, until, stop: () => abort.abort() };
}

describe('GET /api/functions/<name>/logs?follow=1', () => {
  it('streams the recent lines, then each new one as it happens, as NDJSON', async () => {
    await invoke('talk?before-follow');
    const follower = await follow();
    expect(follower.response.headers.get('content-type')).toBe('application/x-ndjson');
    await follower.until('said before-follow\n'.slice(0, -1));
    const { id } = await invoke('talk?followed-ndjson');
    const text = await follower.until('followed-ndjson');
    const lines = text
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines.at(-1)).toEqual({
      time: expect.any(String),
      function: 'talk',
      invocationId: id,
      instance: null,
      stream: 'stderr',
      line: 'said followed-ndjson',
    });
    // Each line once, though it may have been both recent and new.
    expect(new Set(lines.map((l) => JSON.stringify(l))).size).toBe(lines.length);
    follower.stop();
  });

  it('streams server-sent events for Accept: text/event-stream', async () => {
    const follower = await follow('text/event-stream');
    expect(follower.response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    await invoke('talk?followed-sse');
    const text = await follower.until('followed-sse');
    const event = text.split('\n\n').find((chunk) => chunk.includes('followed-sse'))!;
    expect(event.startsWith('data: ')).toBe(true);
    expect(JSON.parse(event.slice('data: '.length)).line).toBe('said followed-sse');
    follower.stop();
  });

  it('lets followers go when they disconnect, and goes on serving', async () => {
    for (let i = 0; i < 5; i += 1) {
      const follower = await follow();
      follower.stop();
    }
    const follower = await follow();
    await invoke('talk?after-disconnects');
    await follower.until('after-disconnects');
    follower.stop();
  });
});

describe('after a restart on the same state folder', () => {
  it.each([
    { fn: 'slow', path: 'slow', started: 'slow-started', kind: 'http' },
    { fn: 'lab', path: 'lab/sleep?ms=60000&tag=at-shutdown', started: 'sleep at-shutdown began', kind: 'serve' },
  ])(
    'keeps the record of a $kind invocation still running when the gateway process is stopped (SIGTERM)',
    async ({ fn, path, started, kind }) => {
      const mainState = await mkdtemp(join(tmpdir(), 'fnix-records-main-'));
      let child: MainProcess['child'] | undefined;
      try {
        const main = await startMain({ FNIX_STATE_DIR: mainState, FNIX_FUNCTIONS_DIR: functionsDir, FNIX_TOKEN: TEST_TOKEN, FNIX_SHUTDOWN_GRACE_MS: '500' });
        child = main.child;
        const running = fetch(`${main.url}/fn/${path}`).then(
          (response) => response.text(),
          () => 'cut',
        );
        let id = '';
        await waitUntil(
          async () => {
            const response = await fetch(`${main.url}/api/functions/${fn}/logs`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
            const body = (await response.json()) as any;
            id = body.lines?.find((l: any) => l.line === started)?.invocationId ?? '';
            return id !== '';
          },
          PATIENCE_MS,
          `the ${kind} invocation to start`,
        );
        // The runtime stops it after the grace; its record is written a moment later (a serve request's once
        // its failure is explained, up to 1 s), before the store closes.
        main.child.kill('SIGTERM');
        const result = await main.child;
        expect(result.exitCode).toBe(0);
        await running;
        const store = RecordStore.open({ stateDir: mainState });
        try {
          const found = store.invocation(id);
          expect(found?.invocation).toMatchObject({ id, function: fn, kind });
          expect(found?.invocation.outcome).not.toBe('OK');
          expect(found?.lines.map((l) => l.line)).toContain(started);
        } finally {
          store.close();
        }
      } finally {
        child?.kill('SIGKILL');
        await rm(mainState, { recursive: true, force: true });
      }
    },
    300_000,
  );

  it("still leads from a failed invocation's id to its record and lines", async () => {
    const { id } = await invoke('fail');
    // Stopping the gateway writes what is pending; the next one opens the same database.
    await gateway.close();
    gateway = await startTestGateway({ functionsDir, stateDir, queueTimeoutMs: PATIENCE_MS });
    const { status, body } = await api(`/invocations/${id}`);
    expect(status).toBe(200);
    expect(body.invocation).toMatchObject({ id, outcome: 'FUNCTION_FAILED', exitCode: 3 });
    expect(body.lines.map((l: any) => l.line)).toEqual(['about to fail', 'second line']);
  }, 300_000);
});
