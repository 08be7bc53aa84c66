/**
 * @module
 * The check in front of private functions (gateway/auth/keys/guard.ts), with a real key store on a
 * temporary folder and the failure limiter on a fake clock: public functions pass untouched, the codes
 * for no key, a wrong, a revoked and an out-of-scope key, the limit on wrong keys per address (a right
 * key always passes), that refusals are counted by route alone, that what a key holds open is ended
 * when it is revoked, and that the key never reaches the log. Also the HTTP shape of
 * the refusals (gateway/errors.ts) and the keys' removal from CGI variables and proxied headers.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FailureLimiter } from '../../../gateway/auth/failure-limiter.ts';
import { FileKeyStore } from '../../../gateway/auth/keys/file-store.ts';
import { type KeyAttempt, KeyGuard } from '../../../gateway/auth/keys/guard.ts';
import { buildCgiEnv } from '../../../gateway/cgi/env.ts';
import { errorParts } from '../../../gateway/errors.ts';
import { requestHeaders } from '../../../gateway/proxy/headers.ts';
import { FnixError } from '../../../runtime/errors.ts';
import type { Logger } from '../../../runtime/log.ts';

let stateDir: string;
let store: FileKeyStore;
let clock: { now: number };
let counted: string[];
let logged: string[];
let guard: KeyGuard;

beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'fnix-key-guard-'));
  store = await FileKeyStore.open({ stateDir });
  clock = { now: 0 };
  counted = [];
  logged = [];
  const log: Logger = {
    info: (message, fields) => logged.push(`${message} ${JSON.stringify(fields)}`),
    warn: (message, fields) => logged.push(`${message} ${JSON.stringify(fields)}`),
    error: (message, fields) => logged.push(`${message} ${JSON.stringify(fields)}`),
  };
  guard = new KeyGuard({
    keys: store,
    limiter: new FailureLimiter({ burst: 3, refillMs: 6000, now: () => clock.now }),
    log,
    metrics: { authFailed: (route) => counted.push(`failed ${route}`), authRefused: (route) => counted.push(`refused ${route}`) },
  });
});
afterEach(async () => {
  await store.close();
  await rm(stateDir, { recursive: true, force: true });
});

const privateFn = { name: 'secret-fn', manifest: { access: 'key' as const } };
const publicFn = { name: 'hello', manifest: { access: 'public' as const } };

/** The code `guard.check` throws for `headers`, or 'passed'. */
function outcome(headers: IncomingHttpHeaders, more: Partial<KeyAttempt> = {}): string {
  try {
    guard.check({ fn: privateFn, headers, address: '10.0.0.1', route: 'invoke', ...more });
    return 'passed';
  } catch (error) {
    if (!(error instanceof FnixError)) throw error;
    return error.code;
  }
}

describe('KeyGuard', () => {
  it('lets every request to a public function through, counting nothing', () => {
    for (let i = 0; i < 10; i++) expect(outcome({ authorization: 'Bearer wrong' }, { fn: publicFn })).toBe('passed');
    expect(counted).toEqual([]);
  });

  it('asks for a key with KEY_REQUIRED, and refuses a wrong, revoked or out-of-scope one with KEY_INVALID', async () => {
    const all = await store.create({});
    const other = await store.create({ function: 'other-fn' });
    const own = await store.create({ function: 'secret-fn' });
    expect(outcome({})).toBe('KEY_REQUIRED');
    expect(outcome({ authorization: 'Basic dTpw' })).toBe('KEY_REQUIRED');
    expect(outcome({ 'x-fnix-key': all.key })).toBe('passed');
    expect(outcome({ authorization: `Bearer ${own.key}` })).toBe('passed');
    expect(outcome({ authorization: `Bearer ${other.key}` })).toBe('KEY_INVALID');
    await store.revoke(all.id);
    expect(outcome({ 'x-fnix-key': all.key })).toBe('KEY_INVALID');
    expect(counted).toEqual(['failed invoke', 'failed invoke', 'failed invoke', 'failed invoke']);
  });

  it('takes the subprotocol carrier on WebSocket routes only', async () => {
    const { key } = await store.create({});
    const headers = { 'sec-websocket-protocol': `fnix.session, fnix.key.${key}` };
    expect(outcome(headers, { route: 'session' })).toBe('passed');
    expect(outcome(headers, { route: 'websocket' })).toBe('passed');
    expect(outcome(headers, { route: 'invoke' })).toBe('KEY_REQUIRED');
  });

  it('limits wrong keys per address, but lets a right key through whatever its address sent before', async () => {
    const { key } = await store.create({});
    for (let i = 0; i < 3; i++) expect(outcome({ 'x-fnix-key': `wrong-${i}` })).toBe('KEY_INVALID');
    // Out of tries: wrong keys are 429, the right key still passes, and no key is still asked for.
    expect(outcome({ 'x-fnix-key': 'wrong-3' })).toBe('AUTH_RATE_LIMITED');
    expect(outcome({ 'x-fnix-key': key })).toBe('passed');
    expect(outcome({ authorization: `Bearer ${key}` }, { route: 'session' })).toBe('passed');
    expect(outcome({})).toBe('KEY_REQUIRED');
    expect(outcome({ 'x-fnix-key': 'wrong-4' })).toBe('AUTH_RATE_LIMITED');
    // Another address is not concerned; a missing key is no failure.
    expect(outcome({ 'x-fnix-key': 'wrong' }, { address: '10.0.0.2' })).toBe('KEY_INVALID');
    for (let i = 0; i < 5; i++) expect(outcome({}, { address: '10.0.0.3' })).toBe('KEY_REQUIRED');
    expect(outcome({ 'x-fnix-key': 'wrong' }, { address: '10.0.0.3' })).toBe('KEY_INVALID');
    // A refused guess is not a failure counted again: one try comes back after refillMs all the same.
    clock.now += 6000;
    expect(outcome({ 'x-fnix-key': 'wrong-5' })).toBe('KEY_INVALID');
    expect(outcome({ 'x-fnix-key': 'wrong-6' })).toBe('AUTH_RATE_LIMITED');
    expect(counted.filter((c) => c === 'refused invoke')).toHaveLength(3);
    expect(logged.filter((line) => line.startsWith('a request came with a wrong invoke key'))).toHaveLength(6);
  });

  it('returns the id of the key that opened the function, and nothing for a public one', async () => {
    const created = await store.create({ function: 'secret-fn' });
    expect(guard.check({ fn: privateFn, headers: { 'x-fnix-key': created.key }, address: '10.0.0.1', route: 'invoke' })).toBe(created.id);
    expect(guard.check({ fn: publicFn, headers: { 'x-fnix-key': created.key }, address: '10.0.0.1', route: 'invoke' })).toBeUndefined();
  });

  it('ends what a key holds open when that key is revoked, and only that', async () => {
    const one = await store.create({});
    const two = await store.create({});
    const ended: string[] = [];
    guard.hold(one.id, () => ended.push('one a'));
    const letGo = guard.hold(one.id, () => ended.push('one b'));
    guard.hold(two.id, () => ended.push('two'));
    letGo(); // ended by itself: no longer held
    expect(guard.holding(one.id)).toBe(1);
    await store.revoke(one.id);
    expect(ended).toEqual(['one a']);
    expect(guard.holding(one.id)).toBe(0);
    expect(guard.holding(two.id)).toBe(1);
    // A failing end is logged and does not stop the others.
    guard.hold(two.id, () => {
      throw new Error('boom');
    });
    guard.hold(two.id, () => ended.push('two b'));
    await store.revoke(two.id);
    expect(ended).toEqual(['one a', 'two', 'two b']);
    expect(logged.some((line) => line.startsWith('could not end what a revoked invoke key had opened'))).toBe(true);
    // Made again, nothing of the old holds is left.
    await store.create({});
    expect(ended).toHaveLength(3);
  });

  it('never logs the key, and names a scoped key by its id only', async () => {
    const other = await store.create({ function: 'other-fn' });
    const wrong = `fnixk_${'A'.repeat(12)}_${'B'.repeat(43)}`;
    outcome({ 'x-fnix-key': wrong });
    outcome({ authorization: `Bearer ${other.key}` });
    expect(logged).toHaveLength(2);
    const text = logged.join('\n');
    expect(text).not.toContain(wrong);
    expect(text).not.toContain('B'.repeat(43));
    expect(text).not.toContain(other.key);
    expect(logged[1]).toContain(other.id);
  });

  it('refuses with a message naming the fix, and a Bearer challenge', () => {
    let error: FnixError | undefined;
    try {
      guard.check({ fn: privateFn, headers: {}, address: '10.0.0.1', route: 'invoke' });
    } catch (e) {
      error = e as FnixError;
    }
    expect(error?.message).toMatch(/Authorization: Bearer <key> or X-Fnix-Key/);
    const parts = errorParts(error!);
    expect(parts.status).toBe(401);
    expect(parts.headers['www-authenticate']).toBe('Bearer realm="fnix"');
    expect(JSON.parse(parts.body).error.code).toBe('KEY_REQUIRED');
    expect(errorParts(new FnixError('KEY_INVALID', 'x')).headers['www-authenticate']).toBe('Bearer realm="fnix"');
  });
});

describe('a key never reaches the function', () => {
  const key = `fnixk_${'a'.repeat(12)}_${'b'.repeat(43)}`;

  it('is not among the CGI variables, whichever header carried it', () => {
    const env = buildCgiEnv({
      method: 'GET',
      pathInfo: '',
      query: '',
      scriptName: '/fn/x',
      headers: { 'x-fnix-key': key, authorization: `Bearer ${key}`, 'sec-websocket-protocol': `fnix.session, fnix.key.${key}`, 'x-other': 'kept' },
      requestUri: '/fn/x',
      serverName: 'localhost',
      serverPort: '8080',
      remoteAddr: '127.0.0.1',
      remotePort: '1',
    });
    expect(JSON.stringify(env)).not.toContain(key);
    expect(env['HTTP_X_FNIX_KEY']).toBeUndefined();
    expect(env['HTTP_AUTHORIZATION']).toBeUndefined();
    expect(env['HTTP_SEC_WEBSOCKET_PROTOCOL']).toBe('fnix.session');
    expect(env['HTTP_X_OTHER']).toBe('kept');
    // An Authorization that is not an fnix key is the function's own business.
    const own = buildCgiEnv({ ...baseCgi(), headers: new Headers({ authorization: 'Bearer app-token', 'x-fnix-key': key }) });
    expect(own['HTTP_AUTHORIZATION']).toBe('Bearer app-token');
    expect(JSON.stringify(own)).not.toContain(key);
  });

  it('is not among the headers the serve proxy passes on', () => {
    const rawHeaders = ['Host', 'x', 'X-Fnix-Key', key, 'Authorization', `Bearer ${key}`, 'Sec-WebSocket-Protocol', `chat, fnix.key.${key}`, 'X-Other', 'kept'];
    const incoming = { rawHeaders, headers: {}, socket: { remoteAddress: '127.0.0.1' } } as unknown as IncomingMessage;
    const out = requestHeaders({ incoming, invocationId: 'id', upgrade: true });
    expect(out.join('\n')).not.toContain(key);
    expect(out).toEqual(expect.arrayContaining(['Sec-WebSocket-Protocol', 'chat', 'X-Other', 'kept']));
    const own = requestHeaders({ incoming: { ...incoming, rawHeaders: ['Authorization', 'Basic dTpw'] } as IncomingMessage, invocationId: 'id' });
    expect(own.slice(0, 2)).toEqual(['Authorization', 'Basic dTpw']);
  });
});

function baseCgi() {
  return {
    method: 'GET',
    pathInfo: '',
    query: '',
    scriptName: '/fn/x',
    requestUri: '/fn/x',
    serverName: 'h',
    serverPort: '1',
    remoteAddr: '1',
    remotePort: '1',
  };
}
