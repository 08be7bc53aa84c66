/**
 * @module
 * The keys' API (gateway/routes/keys.ts) in-process, with app.request, a real key store on a temporary
 * folder and the real token guard: the contract's answers, the deploy token on every route, the checks
 * of a key request. Also /metrics with FNIX_METRICS_TOKEN (gateway/routes/metrics.ts) and its setting
 * in loadConfig.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hono } from 'hono';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FailureLimiter } from '../../../gateway/auth/failure-limiter.ts';
import { TokenGuard } from '../../../gateway/auth/guard.ts';
import { FileKeyStore } from '../../../gateway/auth/keys/file-store.ts';
import { TokenCheck } from '../../../gateway/auth/token.ts';
import { loadConfig } from '../../../gateway/config.ts';
import { errorResponse, toFnixError } from '../../../gateway/errors.ts';
import type { GatewayMetrics } from '../../../gateway/metrics/metrics.ts';
import { createKeysApi } from '../../../gateway/routes/keys.ts';
import { createMetricsHandler } from '../../../gateway/routes/metrics.ts';
import { silentLogger } from '../../../runtime/log.ts';

const TOKEN = 'the-deploy-token-0123';
const METRICS_TOKEN = 'the-metrics-token-456';
const counted: string[] = [];
const metrics = {
  authFailed: (route: string) => counted.push(`failed ${route}`),
  authRefused: (route: string) => counted.push(`refused ${route}`),
  render: async () => ({ body: 'fnix_up 1\n', contentType: 'text/plain; version=0.0.4' }),
} as unknown as GatewayMetrics;

let stateDir: string;
let store: FileKeyStore;
let app: Hono;

beforeEach(async () => {
  counted.length = 0;
  stateDir = await mkdtemp(join(tmpdir(), 'fnix-keys-api-'));
  store = await FileKeyStore.open({ stateDir });
  const guard = (check: TokenCheck) => new TokenGuard({ token: check, limiter: new FailureLimiter({ burst: 3 }), log: silentLogger, metrics });
  app = new Hono();
  app.route('/api', createKeysApi({ keys: store, token: guard(new TokenCheck(TOKEN)) }));
  app.get('/metrics', createMetricsHandler(metrics, guard(new TokenCheck(METRICS_TOKEN, 'the metrics token (FNIX_METRICS_TOKEN)'))));
  app.get('/open-metrics', createMetricsHandler(metrics));
  app.onError((error) => errorResponse(toFnixError(error)));
});
afterEach(async () => {
  await store.close();
  await rm(stateDir, { recursive: true, force: true });
});

/** A request from `address`, with the deploy token unless `token` says otherwise. */
function request(path: string, init: RequestInit & { token?: string | null; address?: string } = {}) {
  const { token = TOKEN, address = '10.0.0.1', ...rest } = init;
  const headers = new Headers(rest.headers);
  if (token !== null) headers.set('authorization', `Bearer ${token}`);
  return app.request(path, { ...rest, headers }, { incoming: { socket: { remoteAddress: address } } });
}

describe('/api/keys', () => {
  it('creates, lists and revokes keys as the contract says', async () => {
    const created = await request('/api/keys', { method: 'POST', body: JSON.stringify({ name: 'ci', function: 'hello' }) });
    expect(created.status).toBe(201);
    const body = await created.json();
    expect(body).toEqual({
      id: expect.stringMatching(/^[0-9A-Za-z]{12}$/),
      key: expect.stringMatching(/^fnixk_/),
      name: 'ci',
      function: 'hello',
      createdAt: expect.any(String),
    });
    const all = await (await request('/api/keys', { method: 'POST' })).json();
    expect(all.function).toBeNull();
    expect(all.name).toBeNull();

    const listed = await request('/api/keys');
    expect(listed.status).toBe(200);
    const text = await listed.text();
    expect(text).not.toContain(body.key);
    expect(JSON.parse(text)).toEqual({
      keys: [
        { id: body.id, name: 'ci', function: 'hello', createdAt: body.createdAt, lastUsedAt: null },
        { id: all.id, name: null, function: null, createdAt: all.createdAt, lastUsedAt: null },
      ],
    });

    const revoked = await request(`/api/keys/${body.id}`, { method: 'DELETE' });
    expect(await revoked.json()).toEqual({ id: body.id, revoked: true });
    const again = await request(`/api/keys/${body.id}`, { method: 'DELETE' });
    expect(again.status).toBe(404);
    expect((await again.json()).error.code).toBe('KEY_NOT_FOUND');
  });

  it('needs the deploy token on every route', async () => {
    for (const [method, path] of [
      ['POST', '/api/keys'],
      ['GET', '/api/keys'],
      ['DELETE', '/api/keys/abcdefabcdef'],
    ] as const) {
      const response = await request(path, { method, token: null });
      expect(response.status, `${method} ${path}`).toBe(401);
      expect((await response.json()).error.code).toBe('UNAUTHORIZED');
    }
    expect(store.list()).toEqual([]);
    // Wrong ones are limited per address, as on the rest of /api.
    for (let i = 0; i < 3; i++) expect((await request('/api/keys', { token: 'wrong-token-wrong-token' })).status).toBe(401);
    expect((await request('/api/keys')).status).toBe(429);
    expect((await request('/api/keys', { address: '10.0.0.2' })).status).toBe(200);
  });

  it('checks the request: JSON, known fields, strings, a valid function name (deployed or not)', async () => {
    const codeOf = async (body: string) => {
      const response = await request('/api/keys', { method: 'POST', body });
      return response.status === 201 ? 'created' : `${response.status} ${(await response.json()).error.code}`;
    };
    expect(await codeOf('{')).toBe('400 BAD_REQUEST');
    expect(await codeOf('[]')).toBe('400 BAD_REQUEST');
    expect(await codeOf('{"scope":"hello"}')).toBe('400 BAD_REQUEST');
    expect(await codeOf('{"function":3}')).toBe('400 BAD_REQUEST');
    expect(await codeOf('{"function":"Bad_Name"}')).toBe('400 FUNCTION_NAME_INVALID');
    expect(await codeOf(JSON.stringify({ name: 'x'.repeat(5000) }))).toBe('413 BODY_TOO_LARGE');
    expect(await codeOf('{"function":"deployed-later","name":null}')).toBe('created');
    expect(await codeOf('{"function":null}')).toBe('created');
  });
});

describe('/metrics with FNIX_METRICS_TOKEN', () => {
  it('answers only with the token, limiting wrong ones; without the setting it is open', async () => {
    const none = await request('/metrics', { token: null });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="fnix"');
    expect((await none.json()).error.message).toMatch(/FNIX_METRICS_TOKEN/);
    // The deploy token is not the metrics token.
    expect((await request('/metrics', { token: TOKEN })).status).toBe(401);
    const right = await request('/metrics', { token: METRICS_TOKEN });
    expect(right.status).toBe(200);
    expect(await right.text()).toBe('fnix_up 1\n');
    for (let i = 0; i < 2; i++) expect((await request('/metrics', { token: 'wrong-token-wrong-token' })).status).toBe(401);
    expect((await request('/metrics', { token: METRICS_TOKEN })).status).toBe(429);
    expect(counted.filter((c) => c === 'failed metrics')).toHaveLength(3);
    expect((await request('/open-metrics', { token: null })).status).toBe(200);
  });

  it('is read by loadConfig, at least 16 characters', () => {
    expect(loadConfig({}).metricsToken).toBeUndefined();
    expect(loadConfig({ FNIX_METRICS_TOKEN: METRICS_TOKEN }).metricsToken).toBe(METRICS_TOKEN);
    expect(() => loadConfig({ FNIX_METRICS_TOKEN: 'short' })).toThrow(/FNIX_METRICS_TOKEN must be at least 16 characters/);
    expect(() => loadConfig({ FNIX_METRICS_TOKEN: 'has a space in it, long' })).toThrow(/FNIX_METRICS_TOKEN/);
  });
});
