/**
 * @module
 * Serve functions against a real gateway, real Podman and a real Python: one server process answering
 * call after call, the headers a reverse proxy passes and drops, one request per instance at
 * concurrency 1, scaling up to maxInstances under load and down to minInstances when idle, a server
 * that crashes, runs out of memory or passes its timeoutMs (and its replacement), bodies streamed both
 * ways, a WebSocket passed through, a client that goes away, the server's output in the log, and the
 * instance metrics.
 *
 * The functions are test/fixtures/serve/lab (Python's standard library; its docstring lists the routes)
 * under four manifests (below), the examples counter-py and counter-node, and not-serve (a plain function).
 */
import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, type IncomingHttpHeaders, type IncomingMessage, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { EXAMPLES_DIR, startTestGateway, TEST_TOKEN, type TestGateway } from '../helpers/gateway.ts';
import { scrape } from '../helpers/metrics.ts';
import { waitUntil } from '../helpers/processes.ts';

const SERVE_FIXTURES = fileURLToPath(new URL('../fixtures/serve', import.meta.url));
const MIB = 1024 * 1024;
/** FNIX_MAX_BODY of the gateway (the production default). */
const MAX_BODY = 6 * MIB;
/** The longest any wait on the gateway may take: generous, for a loaded machine. */
const PATIENCE_MS = 30_000;

/**
 * lab's manifest is test/fixtures/serve/lab/function.json (concurrency 1, minInstances 1, maxInstances 3,
 * idleTimeoutMs 1000, timeoutMs 20000, memoryMb 128); the others are lab's server under other limits.
 */
const VARIANTS: Record<string, { top?: Record<string, unknown>; serve?: Record<string, unknown> }> = {
  // One instance at most: a second request waits for the first; a crashed server is replaced.
  'lab-single': { serve: { maxInstances: 1 } },
  'lab-timeout': { top: { timeoutMs: 1500 }, serve: { maxInstances: 2 } },
  'lab-oom': { top: { memoryMb: 48 }, serve: { maxInstances: 2 } },
};

let gateway: TestGateway;
let functionsDir: string;

beforeAll(async () => {
  functionsDir = await mkdtemp(join(tmpdir(), 'fnix-serve-functions-'));
  await cp(join(SERVE_FIXTURES, 'lab'), join(functionsDir, 'lab'), { recursive: true });
  await cp(join(SERVE_FIXTURES, 'not-serve'), join(functionsDir, 'not-serve'), { recursive: true });
  await cp(join(EXAMPLES_DIR, 'counter-py'), join(functionsDir, 'counter-py'), { recursive: true });
  await cp(join(EXAMPLES_DIR, 'counter-node'), join(functionsDir, 'counter-node'), { recursive: true });
  const lab = JSON.parse(await readFile(join(SERVE_FIXTURES, 'lab', 'function.json'), 'utf8'));
  for (const [name, { top, serve }] of Object.entries(VARIANTS)) {
    await cp(join(SERVE_FIXTURES, 'lab'), join(functionsDir, name), { recursive: true });
    const manifest = { ...lab, ...top, serve: { ...lab.serve, ...serve } };
    await writeFile(join(functionsDir, name, 'function.json'), JSON.stringify(manifest, null, 2));
  }
  // Seven serve instances at most (lab's three and one of each other) beside the warm pool.
  gateway = await startTestGateway({ functionsDir, maxBody: MAX_BODY, maxContainers: 12, queueTimeoutMs: PATIENCE_MS });
});
afterAll(async () => {
  await gateway?.close();
  if (functionsDir) await rm(functionsDir, { recursive: true, force: true });
});

// -- helpers ------------------------------------------------------------------------------------

/** A response read whole, with a description for failure messages. */
interface Reply {
  status: number;
  headers: Headers;
  text: string;
  /** `GET /fn/lab/pid -> 502 {"error":...}`, for expect's message. */
  said: string;
}

async function call(path: string, init: RequestInit = {}): Promise<Reply> {
  const response = await fetch(`${gateway.url}${path}`, init);
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, said: `${init.method ?? 'GET'} ${path} -> ${response.status} ${text.slice(0, 2000)}` };
}

/** The JSON a route answered with status `status`; fails with the response's body otherwise. */
async function json(path: string, status = 200, init: RequestInit = {}): Promise<any> {
  const reply = await call(path, init);
  expect(reply.status, reply.said).toBe(status);
  return JSON.parse(reply.text);
}

/** The error object of a fnix error response with `status` and `code`. */
async function fnixError(path: string, status: number, code: string): Promise<any> {
  const reply = await call(path);
  expect(reply.status, reply.said).toBe(status);
  expect(reply.headers.get('content-type'), reply.said).toContain('application/json');
  const { error } = JSON.parse(reply.text);
  expect(error.code, reply.said).toBe(code);
  expect(reply.headers.get('x-fnix-invocation-id'), reply.said).toBeTruthy();
  return error;
}

/** A request through node:http, so that a test chooses the headers (hop-by-hop ones too) and the chunks. */
function rawRequest(
  path: string,
  options: { method?: string; headers?: Record<string, string>; chunks?: Buffer[] } = {},
): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(`${gateway.url}${path}`, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (chunk: Buffer) => parts.push(chunk));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
    });
    req.on('error', reject);
    for (const chunk of options.chunks ?? []) req.write(chunk);
    req.end();
  });
}

/** The instances of `name` as GET /api/functions/<name> lists them. */
async function instancesOf(name: string): Promise<Array<{ id: string; state: string; inFlight: number; requests: number }>> {
  const response = await fetch(`${gateway.url}/api/functions/${name}`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
  const text = await response.text();
  expect(response.status, `GET /api/functions/${name} -> ${text}`).toBe(200);
  return JSON.parse(text).instances;
}

/** Waits until a log line matches `pattern`; returns the match. */
async function logLine(pattern: RegExp, what: string, timeoutMs = PATIENCE_MS): Promise<RegExpMatchArray> {
  let match: RegExpMatchArray | null = null;
  await waitUntil(
    () => {
      for (const line of gateway.logs) {
        match = pattern.exec(line);
        if (match) return true;
      }
      return false;
    },
    timeoutMs,
    `${what} (a log line matching ${pattern})`,
  ).catch((error: Error) => {
    throw new Error(`${error.message}; the log's last lines:\n${gateway.logs.slice(-15).join('')}`);
  });
  return match!;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Server times of a /sleep answer: did the two run at the same time in one process? */
const overlap = (a: { began: number; ended: number }, b: { began: number; ended: number }) => a.began < b.ended && b.began < a.ended;

// -- the tests ----------------------------------------------------------------------------------

describe('a serve function', () => {
  it('answers call after call from the same process: the counter of counter-py grows', async () => {
    const replies: Array<{ body: any; id: string | null }> = [];
    for (let i = 0; i < 3; i += 1) {
      const reply = await call('/fn/counter-py/hits');
      expect(reply.status, reply.said).toBe(200);
      replies.push({ body: JSON.parse(reply.text), id: reply.headers.get('x-fnix-invocation-id') });
    }
    const [first, ...rest] = replies;
    expect(first!.id).toMatch(/^[\w-]{21}$/);
    rest.forEach((reply, i) => {
      const said = JSON.stringify(replies);
      expect(reply.body.hits, said).toBe(first!.body.hits + i + 1);
      expect(reply.body.instance, said).toBe(first!.body.instance);
      expect(reply.body.pid, said).toBe(first!.body.pid);
    });
    for (const reply of replies) expect(reply.body.invocation, 'the server saw the id the client got').toBe(reply.id);
    expect(first!.body.instance).toMatch(/^i-[0-9a-z]{8}$/);
  });

  it('answers from one Node.js process too: the counter of counter-node grows, and POST /echo answers its JSON', async () => {
    const hits: Array<{ hits: number; instance: string; pid: number }> = [];
    for (let i = 0; i < 3; i += 1) {
      const reply = await call('/fn/counter-node/hits');
      expect(reply.status, reply.said).toBe(200);
      hits.push(JSON.parse(reply.text));
    }
    expect(hits.map((h) => h.hits - hits[0]!.hits)).toEqual([0, 1, 2]);
    expect(new Set(hits.map((h) => `${h.instance} ${h.pid}`)).size, JSON.stringify(hits)).toBe(1);
    const echo = await fetch(`${gateway.url}/fn/counter-node/echo`, { method: 'POST', body: '{"a":[1,2]}' });
    expect(echo.status).toBe(200);
    expect(await echo.json()).toEqual({ echo: { a: [1, 2] } });
    const bad = await fetch(`${gateway.url}/fn/counter-node/echo`, { method: 'POST', body: 'not json' });
    expect(bad.status).toBe(400);
  });

  it('passes path and query, drops hop-by-hop headers, and sets the forwarding headers', async () => {
    const { status, headers, body } = await rawRequest('/fn/lab/inspect/a%20b/c?x=1&y=two', {
      method: 'POST',
      headers: {
        Connection: 'x-foo, keep-alive',
        'X-Foo': 'named by Connection',
        'Keep-Alive': 'timeout=5',
        TE: 'trailers',
        'Proxy-Authorization': 'Basic c2VjcmV0',
        'X-Forwarded-For': '203.0.113.7',
        'X-Forwarded-Proto': 'https',
        'X-Forwarded-Host': 'forged.example',
        'X-Fnix-Invocation-Id': 'forged-by-the-client',
        'X-Kept': 'end to end',
        'Content-Type': 'text/plain',
      },
      chunks: [Buffer.from('hello')],
    });
    const said = `${status} ${body.toString()}`;
    expect(status, said).toBe(200);
    const seen = JSON.parse(body.toString());
    const header = (name: string) =>
      (seen.headers as Array<[string, string]>)
        .filter(([n]) => n.toLowerCase() === name)
        .map(([, v]) => v)
        .join(', ') || undefined;
    expect(seen.method, said).toBe('POST');
    expect(seen.path, said).toBe('/inspect/a%20b/c?x=1&y=two');
    expect(seen.bodyBytes, said).toBe(5);
    expect(header('x-kept'), said).toBe('end to end');
    expect(header('content-type'), said).toBe('text/plain');
    for (const dropped of ['x-foo', 'keep-alive', 'te', 'proxy-authorization'])
      expect(header(dropped), `${dropped} reached the server: ${said}`).toBeUndefined();
    expect(header('connection') ?? '', said).not.toMatch(/x-foo/i);
    expect(header('x-forwarded-for'), said).toBe('203.0.113.7, 127.0.0.1');
    expect(header('x-forwarded-proto'), said).toBe('http');
    expect(header('x-forwarded-host'), said).toBe(`127.0.0.1:${gateway.server.port}`);
    expect(headers['x-fnix-invocation-id'], said).toMatch(/^[\w-]{21}$/);
    expect(header('x-fnix-invocation-id'), said).toBe(headers['x-fnix-invocation-id']);
    expect(seen.invocation, said).toBe(headers['x-fnix-invocation-id']);
    expect(headers['x-lab'], said).toBe('inspect');
  });

  it('answers HEAD with the head alone, and keeps the connection', async () => {
    const head = await call('/fn/lab/inspect', { method: 'HEAD' });
    expect(head.status, head.said).toBe(200);
    expect(head.text, head.said).toBe('');
    expect(head.headers.get('content-type'), head.said).toBe('application/json');
    expect(Number(head.headers.get('content-length')), head.said).toBeGreaterThan(0);
    expect(head.headers.get('x-fnix-invocation-id'), head.said).toMatch(/^[\w-]{21}$/);

    // HEAD, then GET on the same keep-alive connection; the gateway writes nothing to the console.
    const consoleError = vi.spyOn(console, 'error');
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const send = (method: string) =>
        new Promise<{ status: number; reused: boolean; body: string }>((resolve, reject) => {
          const req = request(`${gateway.url}/fn/lab/pid`, { method, agent }, (res) => {
            let body = '';
            res.on('data', (chunk: Buffer) => (body += chunk.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket, body }));
          });
          req.on('error', reject);
          req.end();
        });
      const first = await send('HEAD');
      expect(first.status).toBe(200);
      await sleep(200); // time for a connection the gateway closes to be seen closed
      const second = await send('GET');
      expect(second.status, second.body).toBe(200);
      const errors = consoleError.mock.calls.map((args) => args.map(String).join(' '));
      expect(errors, 'the gateway wrote errors to the console while answering HEAD').toEqual([]);
      expect(second.reused, 'the gateway closed the connection after answering HEAD').toBe(true);
    } finally {
      consoleError.mockRestore();
      agent.destroy();
    }
  });

  it('answers a 204 and a 418 as the server gave them, minus its hop-by-hop headers', async () => {
    for (const code of [204, 418]) {
      const reply = await call(`/fn/lab/status/${code}`);
      expect(reply.status, reply.said).toBe(code);
      expect(reply.text, reply.said).toBe('');
      expect(reply.headers.get('x-lab'), reply.said).toBe('status');
      expect(reply.headers.get('x-secret'), 'a header the server named in Connection reached the client').toBeNull();
      expect(reply.headers.get('x-fnix-invocation-id'), reply.said).toBeTruthy();
    }
  });

  it('at concurrency 1 never gives one instance two requests at once', async () => {
    // lab (maxInstances 3): the second goes to another instance, or waits for the first.
    const both = await Promise.all(['c1', 'c2'].map((tag) => json(`/fn/lab/sleep?ms=1500&tag=${tag}`)));
    const said = JSON.stringify(both);
    for (const answer of both) expect(answer.peak, `an instance served two requests at once: ${said}`).toBe(1);
    if (both[0].instance === both[1].instance) expect(overlap(both[0], both[1]), said).toBe(false);

    // lab-single (maxInstances 1): the second waits.
    const single = await Promise.all(['s1', 's2'].map((tag) => json(`/fn/lab-single/sleep?ms=1000&tag=${tag}`)));
    const singleSaid = JSON.stringify(single);
    expect(single[0].instance, singleSaid).toBe(single[1].instance);
    expect(overlap(single[0], single[1]), `both ran at once in one instance: ${singleSaid}`).toBe(false);
    for (const answer of single) expect(answer.peak, singleSaid).toBe(1);
  });

  it('scales up to maxInstances under parallel load, then idles down to minInstances', async () => {
    await waitUntil(async () => (await instancesOf('lab')).length === 1, PATIENCE_MS, 'lab back at its one instance before the load');
    const startsOf = async () => (await scrape(gateway.url)).value('fnix_serve_instance_starts_total', { function: 'lab', outcome: 'ready' });
    const startsBefore = await startsOf();
    let most = 0;
    let loading = true;
    const watching = (async () => {
      while (loading) {
        most = Math.max(most, (await instancesOf('lab')).length);
        await sleep(100);
      }
    })();
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => json(`/fn/lab/sleep?ms=1500&tag=load${i}`)));
    const said = JSON.stringify(answers.map((a) => ({ instance: a.instance, tag: a.tag, peak: a.peak })));
    const used = new Set(answers.map((a) => a.instance));
    expect(used.size, `more instances than maxInstances 3: ${said}`).toBeLessThanOrEqual(3);
    expect(used.size, `no instance was added for the load: ${said}`).toBeGreaterThanOrEqual(2);
    for (const answer of answers) expect(answer.peak, said).toBe(1);
    // Two more were started for the load (counted once ready), and no more than that.
    await waitUntil(async () => (await startsOf()) - startsBefore >= 2, PATIENCE_MS, 'two instance starts for the load');
    expect((await startsOf()) - startsBefore, said).toBe(2);

    // Idle for idleTimeoutMs (1000 ms): back to minInstances (1), and it stays there.
    await waitUntil(
      async () => {
        const list = await instancesOf('lab');
        most = Math.max(most, list.length);
        return list.length === 1 && list[0]!.state === 'ready';
      },
      PATIENCE_MS,
      'lab to idle down to its one instance',
    );
    loading = false;
    await watching;
    expect(most, 'the API listed more instances than maxInstances').toBeLessThanOrEqual(3);
    await sleep(2500);
    const after = await instancesOf('lab');
    expect(
      after.map((i) => i.state),
      JSON.stringify(after),
    ).toEqual(['ready']);
  });

  it('answers a request whose server crashed with 502 SERVER_EXITED, and the next from a new instance', async () => {
    const before = await json('/fn/lab-single/pid');
    const error = await fnixError('/fn/lab-single/crash', 502, 'SERVER_EXITED');
    expect(error.exitCode, JSON.stringify(error)).toBe(3);
    expect(error.stderr, JSON.stringify(error)).toContain('crashing now, on purpose');
    expect(error.instance, JSON.stringify(error)).toBe(before.instance);
    const after = await json('/fn/lab-single/pid');
    expect(after.instance, 'the crashed instance answered again').not.toBe(before.instance);
  });

  it('answers a request whose server ran out of memory with 502 FUNCTION_OOM, and the next from a new instance', async () => {
    const before = await json('/fn/lab-oom/pid');
    const error = await fnixError('/fn/lab-oom/oom?mb=256', 502, 'FUNCTION_OOM');
    expect(error.instance, JSON.stringify(error)).toBe(before.instance);
    expect(error.message, JSON.stringify(error)).toMatch(/memory.*48/i);
    const after = await json('/fn/lab-oom/pid');
    expect(after.instance, 'the killed instance answered again').not.toBe(before.instance);
  });

  it('answers a request past timeoutMs with 504 FUNCTION_TIMEOUT and, at concurrency 1, replaces the instance at once', async () => {
    const before = await json('/fn/lab-timeout/pid');
    const error = await fnixError('/fn/lab-timeout/sleep?ms=60000&tag=stuck', 504, 'FUNCTION_TIMEOUT');
    expect(error.instance, JSON.stringify(error)).toBe(before.instance);
    const begin = performance.now();
    const after = await json('/fn/lab-timeout/pid');
    const waited = performance.now() - begin;
    expect(after.instance, 'the next request went to the stuck instance').not.toBe(before.instance);
    expect(waited, 'the next request waited behind the stuck one').toBeLessThan(15_000);
    await logLine(new RegExp(`instance stopped function=lab-timeout instance=${before.instance} .*timeoutMs`), 'the stuck instance stopped');
  });

  it('streams a chunked response to the client as the server writes it', async () => {
    const begin = performance.now();
    const response = await fetch(`${gateway.url}/fn/lab/stream?n=5&ms=400`);
    expect(response.status).toBe(200);
    expect(response.headers.get('x-fnix-invocation-id')).toBeTruthy();
    const reader = response.body!.getReader();
    let text = '';
    const seenAt: number[] = [];
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      text += Buffer.from(r.value).toString();
      while (seenAt.length < (text.match(/\n/g) ?? []).length) seenAt.push(performance.now() - begin);
    }
    expect(text).toBe('chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n');
    // The server spaces them 1600 ms from first to last; a buffering proxy would give all at once.
    expect(seenAt[4]! - seenAt[0]!, `chunks arrived at ${seenAt.map(Math.round).join(', ')} ms`).toBeGreaterThan(800);
  });

  it('streams a chunked request body to the server as the client sends it', async () => {
    // Each line is sent only once the server's echo of the one before has come back.
    const lines = ['one', 'two', 'three', 'four'];
    const transcript = await new Promise<string>((resolve, reject) => {
      const req = request(`${gateway.url}/fn/lab/echo-stream`, { method: 'POST', headers: { 'content-type': 'text/plain' }, agent: false });
      req.on('error', reject);
      let received = '';
      let sent = 0;
      let timer: NodeJS.Timeout | undefined;
      const sendNext = () => {
        clearTimeout(timer);
        if (sent === lines.length) {
          req.end();
          return;
        }
        req.write(`${lines[sent]}\n`);
        sent += 1;
        timer = setTimeout(
          () => reject(new Error(`no echo of line ${sent} within ${PATIENCE_MS} ms while the request was open; got so far: ${JSON.stringify(received)}`)),
          PATIENCE_MS,
        );
      };
      req.on('response', (res: IncomingMessage) => {
        if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
        res.on('data', (chunk: Buffer) => {
          received += chunk.toString();
          if ((received.match(/\n/g) ?? []).length === sent) sendNext();
        });
        res.on('end', () => {
          clearTimeout(timer);
          resolve(received);
        });
      });
      req.flushHeaders();
      sendNext();
    });
    expect(transcript).toBe(lines.map((line) => `got ${line}\n`).join(''));
  });

  it('round-trips a 5 MiB body intact, with Content-Length and chunked', async () => {
    const body = randomBytes(5 * MIB);
    const response = await fetch(`${gateway.url}/fn/lab/echo`, { method: 'POST', body });
    expect(response.status).toBe(200);
    const back = Buffer.from(await response.arrayBuffer());
    expect(back.length).toBe(body.length);
    expect(back.equals(body), 'the echoed body differs').toBe(true);

    const chunks = Array.from({ length: 80 }, (_, i) => body.subarray(i * 64 * 1024, (i + 1) * 64 * 1024));
    const chunked = await rawRequest('/fn/lab/echo', { method: 'POST', chunks });
    expect(chunked.status, chunked.body.subarray(0, 500).toString()).toBe(200);
    expect(chunked.body.equals(body), 'the echoed chunked body differs').toBe(true);
  });

  it('refuses a body over FNIX_MAX_BODY with 413 BODY_TOO_LARGE, by Content-Length and on the stream', async () => {
    const big = randomBytes(MAX_BODY + MIB);
    const declared = await call('/fn/lab/drain', { method: 'POST', body: big });
    expect(declared.status, declared.said).toBe(413);
    expect(JSON.parse(declared.text).error.code, declared.said).toBe('BODY_TOO_LARGE');

    const chunks = Array.from({ length: 112 }, (_, i) => big.subarray(i * 64 * 1024, (i + 1) * 64 * 1024));
    const chunked = await rawRequest('/fn/lab/drain', { method: 'POST', chunks });
    const said = chunked.body.toString().slice(0, 500);
    expect(chunked.status, said).toBe(413);
    expect(JSON.parse(chunked.body.toString()).error.code, said).toBe('BODY_TOO_LARGE');
    // The instance that was cut off still answers.
    await json('/fn/lab/pid');
  });

  it('passes a WebSocket through to the server, holding a slot while it is open', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${gateway.server.port}/fn/lab/ws`, { maxPayload: MIB });
    const upgrade = await new Promise<IncomingMessage>((resolve, reject) => {
      ws.once('upgrade', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => reject(new Error(`upgrade refused: ${res.statusCode} ${text}`)));
      });
    });
    await new Promise((resolve) => (ws.readyState === WebSocket.OPEN ? resolve(undefined) : ws.once('open', resolve)));
    try {
      const id = upgrade.headers['x-fnix-invocation-id'];
      expect(id).toMatch(/^[\w-]{21}$/);
      expect(upgrade.headers['x-lab-invocation'], 'the server was given the same invocation id').toBe(id);
      const instance = upgrade.headers['x-lab-instance'];
      expect(instance).toMatch(/^i-/);
      const messages: string[] = [];
      ws.on('message', (data) => messages.push(data.toString()));
      for (const text of ['hello', 'again']) {
        ws.send(text);
        await waitUntil(() => messages.length > 0 && messages.at(-1)!.endsWith(text), PATIENCE_MS, `the echo of ${text}`);
      }
      expect(messages).toEqual([`echo from ${instance}: hello`, `echo from ${instance}: again`]);
      // At concurrency 1 the open WebSocket is its instance's one request: HTTP goes to another.
      const other = await json('/fn/lab/pid');
      expect(other.instance, 'a request was given the instance a WebSocket holds').not.toBe(instance);
    } finally {
      ws.close(1000, 'done');
      await new Promise((resolve) => (ws.readyState === WebSocket.CLOSED ? resolve(undefined) : ws.once('close', resolve)));
    }
    await logLine(/websocket closed function=lab /, 'the gateway to log the WebSocket closed');
  });

  it('refuses an upgrade on the /fn URL of a function that is not a serve function with ROUTE_NOT_FOUND', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${gateway.server.port}/fn/not-serve/ws`);
    const refusal = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      ws.once('open', () => reject(new Error('the upgrade was accepted')));
      ws.once('error', () => {});
      ws.once('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
    });
    ws.terminate();
    expect(refusal.status, refusal.text).toBe(404);
    expect(JSON.parse(refusal.text).error.code, refusal.text).toBe('ROUTE_NOT_FOUND');
  });

  it('frees the slot when the client goes away mid-request, and the server sees its connection close', async () => {
    const tag = `gone${Date.now()}`;
    const req = request(`${gateway.url}/fn/lab-single/sleep?ms=60000&tag=${tag}`, { agent: false });
    req.on('error', () => {});
    req.end();
    const began = await logLine(new RegExp(`\\[lab-single (i-[0-9a-z]+)\\] sleep ${tag} began`), 'the server to start the slow request');
    req.destroy();
    const begin = performance.now();
    const next = await json('/fn/lab-single/pid');
    const waited = performance.now() - begin;
    expect(next.instance, 'the one instance was replaced rather than freed').toBe(began[1]);
    expect(waited, 'the next request waited behind the abandoned one').toBeLessThan(15_000);
    await logLine(new RegExp(`\\[lab-single ${began[1]}\\] sleep ${tag}: the client closed the connection`), 'the server to see the connection close');
    await logLine(/invocation function=lab-single .*outcome=INVOCATION_ABORTED/, 'the invocation logged as aborted');
  });

  it("logs the server's stdout and stderr with the [<name> <instance>] prefix, not in a response", async () => {
    const marker = `marker-${randomBytes(6).toString('hex')}`;
    const reply = await call(`/fn/lab/log?text=${marker}`);
    expect(reply.status, reply.said).toBe(200);
    expect(reply.text).not.toContain(marker);
    const { instance } = JSON.parse(reply.text);
    await logLine(new RegExp(`\\[lab ${instance}\\] stdout says ${marker}\\n`), 'the stdout line');
    await logLine(new RegExp(`\\[lab ${instance}\\] stderr says ${marker}\\n`), 'the stderr line');
  });

  it('shows the instances and their starts in /metrics', async () => {
    const metrics = await scrape(gateway.url);
    expect(metrics.value('fnix_serve_instances', { function: 'lab', state: 'ready' })).toBeGreaterThanOrEqual(1);
    expect(metrics.value('fnix_serve_instances', { function: 'counter-py', state: 'ready' })).toBe(1);
    // lab: its push's check, its first instance and the two of the load.
    expect(metrics.value('fnix_serve_instance_starts_total', { function: 'lab', outcome: 'ready' })).toBeGreaterThanOrEqual(4);
    // lab-single: the one that crashed and its replacement (and the check).
    expect(metrics.value('fnix_serve_instance_starts_total', { function: 'lab-single', outcome: 'ready' })).toBeGreaterThanOrEqual(3);
    expect(metrics.value('fnix_serve_instance_start_seconds_count', { function: 'lab' })).toBeGreaterThanOrEqual(4);
    // Ended instances are observed with their request counts: lab-single's crashed one, lab's idle ones.
    expect(metrics.value('fnix_serve_instance_requests_count', { function: 'lab-single' })).toBeGreaterThanOrEqual(1);
    expect(metrics.value('fnix_serve_instance_requests_count', { function: 'lab' })).toBeGreaterThanOrEqual(2);
  });
});
