/**
 * @module
 * Private functions and invoke keys against a real gateway, real Podman and real containers: the
 * refusals (KEY_REQUIRED, KEY_INVALID) on every way in (/fn for CGI and serve functions, a serve
 * function's WebSocket, /sessions), taken before any container or instance and adding no metric series
 * with the function's label; keys in either header, scoped, revoked at once, and a revoked key's open
 * session and serve WebSocket ended; the function never seeing the key; the key in no log line nor file
 * of the state folder; /metrics behind FNIX_METRICS_TOKEN; and the limit on wrong keys per client
 * address, which a right key passes.
 *
 * Each test that sends wrong keys does so from a loopback address of its own (127.0.0.x), so that the
 * limit one test reaches does not refuse the next one's requests.
 */
import { cp, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { type IncomingHttpHeaders, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { EXAMPLES_DIR, FIXTURES_DIR, startTestGateway, TEST_TOKEN, type TestGateway } from '../helpers/gateway.ts';
import { waitUntil } from '../helpers/processes.ts';
import { openSession } from '../helpers/session-client.ts';

const SERVE_FIXTURES = fileURLToPath(new URL('../fixtures/serve', import.meta.url));
const METRICS_TOKEN = 'metrics-token-0123456789';
const PATIENCE_MS = 30_000;

let gateway: TestGateway;
let functionsDir: string;
/** Every key made in this file: none may show up in a log line or a file of the state folder. */
const madeKeys: string[] = [];

beforeAll(async () => {
  functionsDir = await mkdtemp(join(tmpdir(), 'fnix-keys-functions-'));
  const copy = async (from: string, name: string, changes: Record<string, unknown> = {}) => {
    await cp(from, join(functionsDir, name), { recursive: true });
    const manifest = JSON.parse(await readFile(join(from, 'function.json'), 'utf8'));
    await writeFile(join(functionsDir, name, 'function.json'), JSON.stringify({ ...manifest, ...changes }, null, 2));
  };
  await copy(join(FIXTURES_DIR, 'env-dump'), 'env-dump');
  await copy(join(FIXTURES_DIR, 'env-dump'), 'priv-env', { access: 'key' });
  await copy(join(FIXTURES_DIR, 'shell-test'), 'priv-shell', { access: 'key' });
  await copy(join(EXAMPLES_DIR, 'private-hello'), 'private-hello');
  const lab = JSON.parse(await readFile(join(SERVE_FIXTURES, 'lab', 'function.json'), 'utf8'));
  await copy(join(SERVE_FIXTURES, 'lab'), 'priv-lab', { access: 'key', serve: { ...lab.serve, maxInstances: 1 } });
  gateway = await startTestGateway({ functionsDir, metricsToken: METRICS_TOKEN, queueTimeoutMs: PATIENCE_MS, maxContainers: 10 });
});
afterAll(async () => {
  await gateway?.close();
  if (functionsDir) await rm(functionsDir, { recursive: true, force: true });
});

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: () => any;
  said: string;
}

/** A request through node:http from loopback address `from` (127.0.0.1 unless told). */
function send(path: string, options: { method?: string; headers?: Record<string, string>; body?: string; from?: string } = {}): Promise<Reply> {
  const { method = 'GET', headers = {}, body, from = '127.0.0.1' } = options;
  return new Promise((resolve, reject) => {
    const req = request(`${gateway.url}${path}`, { method, headers, agent: false, localAddress: from }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (chunk: Buffer) => parts.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(parts).toString();
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          text,
          json: () => JSON.parse(text),
          said: `${method} ${path} -> ${res.statusCode} ${text.slice(0, 500)}`,
        });
      });
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** Makes a key through the API. */
async function createKey(body: { name?: string; function?: string } = {}): Promise<{ id: string; key: string }> {
  const reply = await send('/api/keys', {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(reply.status, reply.said).toBe(201);
  const created = reply.json();
  madeKeys.push(created.key);
  return created;
}

async function revokeKey(id: string): Promise<void> {
  const reply = await send(`/api/keys/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${TEST_TOKEN}` } });
  expect(reply.json(), reply.said).toEqual({ id, revoked: true });
}

/** Expects a JSON refusal with `status` and `code`; returns its error object. */
function expectRefusal(reply: Reply, status: number, code: string): any {
  expect(reply.status, reply.said).toBe(status);
  expect(reply.headers['content-type'], reply.said).toBe('application/json; charset=utf-8');
  const { error } = reply.json();
  expect(error.code, reply.said).toBe(code);
  if (status === 401) expect(reply.headers['www-authenticate'], reply.said).toBe('Bearer realm="fnix"');
  return error;
}

/** The metric series (name and labels, without values) that carry `function="<name>"`. */
async function seriesOf(name: string): Promise<string[]> {
  const reply = await send('/metrics', { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  expect(reply.status, reply.said).toBe(200);
  return reply.text
    .split('\n')
    .filter((line) => !line.startsWith('#') && line.includes(`function="${name}"`))
    .map((line) => line.replace(/ \S+$/, ''))
    .sort();
}

/** A metric's value (its series with exactly these labels), 0 when absent. */
async function metricValue(series: string): Promise<number> {
  const reply = await send('/metrics', { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  const line = reply.text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

/** The pool's containers as /healthz counts them, once nothing is starting. */
async function settledPool(): Promise<Record<string, number>> {
  let pool: Record<string, number> = {};
  await waitUntil(
    async () => {
      pool = (await send('/healthz')).json().pool;
      return pool['starting'] === 0 && pool['queued'] === 0 && pool['busy'] === 0;
    },
    PATIENCE_MS,
    'the pool to settle',
  );
  const { warm, idle, busy, serving, total } = pool;
  return { warm: warm!, idle: idle!, busy: busy!, serving: serving!, total: total! };
}

/** A lab instance's request count (GET /api/functions/priv-lab). */
async function labRequests(): Promise<number> {
  const reply = await send('/api/functions/priv-lab', { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
  expect(reply.status, reply.said).toBe(200);
  return (reply.json().instances as Array<{ requests: number }>).reduce((sum, i) => sum + i.requests, 0);
}

/** An upgrade request that must be refused, from loopback address `from`. */
function refusedUpgrade(path: string, headers: Record<string, string>, from: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(`${gateway.url}${path}`, {
      localAddress: from,
      agent: false,
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers },
    });
    req.on('upgrade', (_res, socket) => {
      socket.destroy();
      reject(new Error(`${path} was upgraded; expected a refusal`));
    });
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (chunk: Buffer) => parts.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString();
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          text,
          json: () => JSON.parse(text),
          said: `upgrade ${path} -> ${res.statusCode} ${text}`,
        });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** Every file of the state folder that holds `needle` (the folders under it, read whole, up to 16 MiB each). */
async function filesHolding(dir: string, needles: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await filesHolding(path, needles)));
    else if (entry.isFile() && (await stat(path)).size < 16 * 1024 * 1024) {
      const text = await readFile(path, 'latin1');
      if (needles.some((needle) => text.includes(needle))) found.push(path);
    }
  }
  return found;
}

describe('a private function', () => {
  it('refuses requests without a valid key before taking a container, adding no series with its label', async () => {
    const all = await createKey({ name: 'all' });
    const other = await createKey({ function: 'private-hello' });
    const revoked = await createKey({ function: 'priv-env' });
    await revokeKey(revoked.id);
    const poolBefore = await settledPool();
    const failedBefore = await metricValue('fnix_auth_failures_total{route="invoke"}');
    expect(await seriesOf('priv-env')).toEqual([]);

    const from = '127.0.0.2';
    const none = expectRefusal(await send('/fn/priv-env', { from }), 401, 'KEY_REQUIRED');
    expect(none.message).toMatch(/Authorization: Bearer <key> or X-Fnix-Key/);
    expectRefusal(await send('/fn/priv-env/a/b?x=1', { method: 'POST', body: 'data', from }), 401, 'KEY_REQUIRED');
    const wrongKey = `fnixk_${'Z'.repeat(12)}_${'q'.repeat(43)}`;
    expectRefusal(await send('/fn/priv-env', { headers: { 'x-fnix-key': wrongKey }, from }), 401, 'KEY_INVALID');
    expectRefusal(
      await send('/fn/priv-env', { headers: { 'x-fnix-key': all.key.slice(0, -1) + (all.key.endsWith('A') ? 'B' : 'A') }, from }),
      401,
      'KEY_INVALID',
    );
    expectRefusal(await send('/fn/priv-env', { headers: { authorization: `Bearer ${other.key}` }, from }), 401, 'KEY_INVALID');
    expectRefusal(await send('/fn/priv-env', { headers: { authorization: `Bearer ${revoked.key}` }, from }), 401, 'KEY_INVALID');
    expectRefusal(await send('/fn/priv-env', { headers: { authorization: 'Bearer an-app-token' }, from }), 401, 'KEY_INVALID');

    expect(await settledPool()).toEqual(poolBefore);
    expect(await seriesOf('priv-env')).toEqual([]);
    expect(await metricValue('fnix_auth_failures_total{route="invoke"}')).toBe(failedBefore + 7);
    // The same key opens it: the refusals were the keys', not the function's.
    expect((await send('/fn/priv-env', { headers: { 'x-fnix-key': all.key } })).status).toBe(200);
    expect((await seriesOf('priv-env')).length).toBeGreaterThan(0);
  });

  it('answers 200 with a key in either header, and the function never sees the key', async () => {
    const { key } = await createKey({ name: 'env', function: 'priv-env' });
    for (const headers of [
      { 'x-fnix-key': key } as Record<string, string>,
      { authorization: `Bearer ${key}` },
      { authorization: `Bearer ${key}`, 'x-fnix-key': key },
    ]) {
      const reply = await send('/fn/priv-env?q=1', { headers: { ...headers, 'x-marker': 'seen' } });
      expect(reply.status, reply.said).toBe(200);
      expect(reply.text).toContain('HTTP_X_MARKER=seen');
      expect(reply.text).toContain('QUERY_STRING=q=1');
      expect(reply.text).not.toContain(key);
      expect(reply.text).not.toMatch(/HTTP_X_FNIX_KEY|HTTP_AUTHORIZATION|fnixk_/);
    }
    // A function's own Authorization passes, when the key comes in X-Fnix-Key.
    const own = await send('/fn/priv-env', { headers: { 'x-fnix-key': key, authorization: 'Basic dTpw' } });
    expect(own.text).toContain('HTTP_AUTHORIZATION=Basic dTpw');

    const example = await send('/fn/private-hello?name=key', { headers: { 'x-fnix-key': (await createKey()).key } });
    expect(example.status, example.said).toBe(200);
    expect(example.text).toBe('Hello, key! Only key holders see this.\n');

    const listed = (await send('/api/keys', { headers: { authorization: `Bearer ${TEST_TOKEN}` } })).json();
    expect(listed.keys.find((k: { name: string }) => k.name === 'env').lastUsedAt).toEqual(expect.any(String));
  });

  it('leaves public functions as they were, and keeps a key sent to one from it', async () => {
    const { key } = await createKey();
    const plain = await send('/fn/env-dump');
    expect(plain.status, plain.said).toBe(200);
    const keyed = await send('/fn/env-dump', { headers: { 'x-fnix-key': key, authorization: `Bearer ${key}` } });
    expect(keyed.status, keyed.said).toBe(200);
    expect(keyed.text).not.toContain(key);
    expect(await send('/fn/env-dump', { headers: { authorization: 'Bearer not-a-key' } }).then((r) => r.text)).toContain('HTTP_AUTHORIZATION=Bearer not-a-key');
  });

  it('opens only with a key scoped to it or to every function, and refuses a revoked key at the next request', async () => {
    const scoped = await createKey({ function: 'priv-env' });
    const from = '127.0.0.3';
    expect((await send('/fn/priv-env', { headers: { 'x-fnix-key': scoped.key }, from })).status).toBe(200);
    expectRefusal(await send('/fn/private-hello', { headers: { 'x-fnix-key': scoped.key }, from }), 401, 'KEY_INVALID');
    await revokeKey(scoped.id);
    expectRefusal(await send('/fn/priv-env', { headers: { 'x-fnix-key': scoped.key }, from }), 401, 'KEY_INVALID');
    const listed = (await send('/api/keys', { headers: { authorization: `Bearer ${TEST_TOKEN}` } })).json();
    expect(listed.keys.map((k: { id: string }) => k.id)).not.toContain(scoped.id);
  });
});

describe('sessions of a private function', () => {
  it('are refused without a valid key, before a container is taken', async () => {
    const poolBefore = await settledPool();
    const from = '127.0.0.4';
    expectRefusal(await refusedUpgrade('/sessions/priv-shell', {}, from), 401, 'KEY_REQUIRED');
    expectRefusal(await refusedUpgrade('/sessions/priv-shell', { 'x-fnix-key': `fnixk_${'a'.repeat(12)}_${'b'.repeat(43)}` }, from), 401, 'KEY_INVALID');
    const other = await createKey({ function: 'priv-env' });
    expectRefusal(await refusedUpgrade('/sessions/priv-shell', { 'sec-websocket-protocol': `fnix.session, fnix.key.${other.key}` }, from), 401, 'KEY_INVALID');
    expect(await settledPool()).toEqual(poolBefore);
    expect(await seriesOf('priv-shell')).toEqual([]);
  });

  it('work with the key in a header or a subprotocol, and the command never sees it', async () => {
    const { key } = await createKey({ function: 'priv-shell' });
    const withHeader = await openSession(gateway.url, '/sessions/priv-shell', { headers: { 'x-fnix-key': key } });
    withHeader.send(0, 'env; echo done-$((6*7))\n');
    await withHeader.waitFor('done-42');
    expect(withHeader.text(1)).not.toContain(key);
    expect(withHeader.text(1)).toContain('FNIX_SESSION=1');
    withHeader.send(0, 'exit 3\n');
    expect((await withHeader.closed).status).toEqual({ exitCode: 3 });

    // As the browser page sends it: a subprotocol beside fnix.session, which the gateway picks.
    let upgradeHeaders: IncomingHttpHeaders = {};
    const ws = new WebSocket(`${gateway.url.replace('http', 'ws')}/sessions/priv-shell`, ['fnix.session', `fnix.key.${key}`]);
    ws.on('upgrade', (res) => (upgradeHeaders = res.headers));
    const output: Buffer[] = [];
    ws.on('message', (data: Buffer) => {
      if (data[0] === 1) output.push(data.subarray(1));
    });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    expect(ws.protocol).toBe('fnix.session');
    expect(JSON.stringify(upgradeHeaders)).not.toContain(key);
    ws.send(Buffer.concat([Buffer.of(0), Buffer.from('env; echo done-$((6*7))\nexit\n')]));
    await new Promise((resolve) => ws.once('close', resolve));
    const text = Buffer.concat(output).toString();
    expect(text).toContain('done-42');
    expect(text).toContain('HTTP_SEC_WEBSOCKET_PROTOCOL=fnix.session');
    expect(text).not.toContain(key);
  });
});

describe('a private serve function', () => {
  it('refuses requests and WebSocket upgrades without a key before an instance takes them', async () => {
    await waitUntil(
      async () => (await send('/fn/priv-lab/pid', { headers: { 'x-fnix-key': (await createKey({ function: 'priv-lab' })).key } })).status === 200,
      PATIENCE_MS,
      'priv-lab to answer',
    );
    const before = await labRequests();
    const seriesBefore = await seriesOf('priv-lab');
    const from = '127.0.0.5';
    expectRefusal(await send('/fn/priv-lab/inspect', { from }), 401, 'KEY_REQUIRED');
    expectRefusal(
      await send('/fn/priv-lab/inspect', { headers: { authorization: `Bearer fnixk_${'c'.repeat(12)}_${'d'.repeat(43)}` }, from }),
      401,
      'KEY_INVALID',
    );
    expectRefusal(await refusedUpgrade('/fn/priv-lab/ws', {}, from), 401, 'KEY_REQUIRED');
    expectRefusal(await refusedUpgrade('/fn/priv-lab/ws', { 'x-fnix-key': 'wrong' }, from), 401, 'KEY_INVALID');
    expect(await labRequests()).toBe(before);
    expect(await seriesOf('priv-lab')).toEqual(seriesBefore);
  });

  it('passes requests and WebSockets with the key on, without the key', async () => {
    const { key } = await createKey({ function: 'priv-lab' });
    const reply = await send('/fn/priv-lab/inspect', { headers: { 'x-fnix-key': key, authorization: `Bearer ${key}`, 'x-marker': 'seen' } });
    expect(reply.status, reply.said).toBe(200);
    const headers = Object.fromEntries((reply.json().headers as [string, string][]).map(([name, value]) => [name.toLowerCase(), value]));
    expect(headers['x-marker']).toBe('seen');
    expect(headers['x-fnix-key']).toBeUndefined();
    expect(headers['authorization']).toBeUndefined();
    expect(reply.text).not.toContain(key);

    const ws = new WebSocket(`${gateway.url.replace('http', 'ws')}/fn/priv-lab/ws`, { headers: { 'x-fnix-key': key } });
    try {
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      const echoed = new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))));
      ws.send('through the key');
      expect(await echoed).toMatch(/^echo from i-\w+: through the key$/);
    } finally {
      // An open WebSocket would hold the gateway's close.
      ws.terminate();
    }
  });
});

describe('/metrics with FNIX_METRICS_TOKEN', () => {
  it('needs the token', async () => {
    const from = '127.0.0.6';
    const none = expectRefusal(await send('/metrics', { from }), 401, 'UNAUTHORIZED');
    expect(none.message).toMatch(/FNIX_METRICS_TOKEN/);
    expectRefusal(await send('/metrics', { headers: { authorization: `Bearer ${TEST_TOKEN}` }, from }), 401, 'UNAUTHORIZED');
    const right = await send('/metrics', { headers: { authorization: `Bearer ${METRICS_TOKEN}` }, from });
    expect(right.status).toBe(200);
    // Only the request with a wrong token counts: one with none is not a guess.
    expect(right.text).toContain('fnix_auth_failures_total{route="metrics"} 1');
  });
});

describe('wrong keys', () => {
  it('are limited per client address: past ten, wrong keys get 429, and a right key still opens the function', async () => {
    const { key } = await createKey({ function: 'priv-env' });
    const sessionKey = await createKey({ function: 'priv-shell' });
    const from = '127.0.0.7';
    for (let i = 0; i < 10; i++) expectRefusal(await send('/fn/priv-env', { headers: { 'x-fnix-key': `wrong-${i}` }, from }), 401, 'KEY_INVALID');
    const limited = expectRefusal(await send('/fn/priv-env', { headers: { 'x-fnix-key': 'wrong-10' }, from }), 429, 'AUTH_RATE_LIMITED');
    expect(limited.retryAfterSeconds).toBeGreaterThan(0);
    expectRefusal(await refusedUpgrade('/sessions/priv-shell', { 'x-fnix-key': 'wrong-11' }, from), 429, 'AUTH_RATE_LIMITED');
    // A guessed 256-bit key is hopeless: the right key passes from the locked-out address, on every way in.
    const right = await send('/fn/priv-env', { headers: { 'x-fnix-key': key }, from });
    expect(right.status, right.said).toBe(200);
    const session = await openSession(gateway.url, '/sessions/priv-shell', { headers: { 'x-fnix-key': sessionKey.key }, localAddress: from });
    session.send(0, 'echo done-$((6*7)); exit 4\n');
    expect((await session.closed).status).toEqual({ exitCode: 4 });
    // Without a key it is still asked for, not limited: a missing key is no guess.
    expectRefusal(await send('/fn/priv-env', { from }), 401, 'KEY_REQUIRED');
    // Another address is not concerned, and neither are public functions nor the deploy token.
    expectRefusal(await send('/fn/priv-env', { headers: { 'x-fnix-key': 'wrong' }, from: '127.0.0.8' }), 401, 'KEY_INVALID');
    expect((await send('/fn/env-dump', { from })).status).toBe(200);
    expect((await send('/api/keys', { headers: { authorization: `Bearer ${TEST_TOKEN}` }, from })).status).toBe(200);
    expect(gateway.logs.some((line) => line.includes('too many wrong invoke keys from one client') && line.includes('127.0.0.7'))).toBe(true);
  });
});

describe('revoking a key', () => {
  it('ends a session it opened, with status KEY_INVALID and close 1008, and no other session', async () => {
    const doomed = await createKey({ function: 'priv-shell' });
    const kept = await createKey({ function: 'priv-shell' });
    const session = await openSession(gateway.url, '/sessions/priv-shell', { headers: { 'x-fnix-key': doomed.key } });
    const other = await openSession(gateway.url, '/sessions/priv-shell', { headers: { 'x-fnix-key': kept.key } });
    session.send(0, 'echo up-$((6*7))\n');
    await session.waitFor('up-42');
    const begin = performance.now();
    await revokeKey(doomed.id);
    const { code, status } = await session.closed;
    const ms = performance.now() - begin;
    expect(code).toBe(1008);
    expect(status?.error?.code).toBe('KEY_INVALID');
    expect(status?.error?.message).toContain(doomed.id);
    // Within about a second (the revoke's own disk write included); generous for a loaded machine.
    expect(ms).toBeLessThan(3000);
    // The other key's session is untouched.
    other.send(0, 'echo still-$((6*7)); exit 5\n');
    await other.waitFor('still-42');
    expect((await other.closed).status).toEqual({ exitCode: 5 });
    expect(gateway.logs.some((line) => line.includes('session ended') && line.includes('KEY_INVALID'))).toBe(true);
  });

  it('refuses a serve WebSocket that waits for an instance when its key is revoked meanwhile', async () => {
    const holder = await createKey({ function: 'priv-lab' });
    const waiter = await createKey({ function: 'priv-lab' });
    // priv-lab has one instance at concurrency 1: while this WebSocket holds it, the next one waits.
    const ws = new WebSocket(`${gateway.url.replace('http', 'ws')}/fn/priv-lab/ws`, { headers: { 'x-fnix-key': holder.key } });
    try {
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      let settled = false;
      const waiting = refusedUpgrade('/fn/priv-lab/ws', { 'x-fnix-key': waiter.key }, '127.0.0.1').finally(() => (settled = true));
      await new Promise((resolve) => setTimeout(resolve, 1000));
      expect(settled, 'the second upgrade waits for the one instance').toBe(false);
      const failedBefore = await metricValue('fnix_auth_failures_total{route="websocket"}');
      await revokeKey(waiter.id);
      const error = expectRefusal(await waiting, 401, 'KEY_INVALID');
      // Ended by the revocation (its message names the key), not refused by a check of its key.
      expect(error.message).toContain(`${waiter.id} was revoked`);
      expect(await metricValue('fnix_auth_failures_total{route="websocket"}')).toBe(failedBefore);
    } finally {
      ws.terminate();
    }
  });

  it("closes a serve WebSocket it opened, and frees the instance's slot", async () => {
    const doomed = await createKey({ function: 'priv-lab' });
    const ws = new WebSocket(`${gateway.url.replace('http', 'ws')}/fn/priv-lab/ws`, { headers: { 'x-fnix-key': doomed.key } });
    const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
    ws.on('error', () => {}); // the connection is cut, not closed with a frame
    try {
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      const echoed = new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))));
      ws.send('before');
      expect(await echoed).toMatch(/^echo from i-\w+: before$/);
      const begin = performance.now();
      await revokeKey(doomed.id);
      await closed;
      expect(performance.now() - begin).toBeLessThan(3000);
    } finally {
      ws.terminate();
    }
    // priv-lab has one instance at concurrency 1: the next request gets it, so the WebSocket let go of it.
    const { key } = await createKey({ function: 'priv-lab' });
    const next = await send('/fn/priv-lab/pid', { headers: { 'x-fnix-key': key } });
    expect(next.status, next.said).toBe(200);
    await waitUntil(() => gateway.logs.some((line) => line.includes('websocket closed') && line.includes('revoked')), PATIENCE_MS, 'the close to be logged');
  });
});

describe('the keys themselves', () => {
  it('appear in no log line and no file of the state folder', async () => {
    expect(madeKeys.length).toBeGreaterThan(8);
    const secrets = madeKeys.map((key) => key.slice(-43));
    for (const line of gateway.logs) for (const secret of secrets) expect(line, 'a log line holds a key').not.toContain(secret);
    expect(await filesHolding(gateway.stateDir, secrets)).toEqual([]);
    expect(gateway.logs.some((line) => line.includes('invoke key created'))).toBe(true);
  });
});
