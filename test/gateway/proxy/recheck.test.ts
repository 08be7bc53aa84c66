/**
 * @module
 * A request queued on a serve version that is retired moves to the version served now
 * (gateway/proxy/http.ts acquireServed); when that one is private, the key is checked again against
 * it. Here with a real key store and KeyGuard, fake instances (the retirement is theirs to tell), and
 * the serve proxy behind a real HTTP server for the request's own headers and the JSON refusal.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FailureLimiter } from '../../../gateway/auth/failure-limiter.ts';
import { FileKeyStore } from '../../../gateway/auth/keys/file-store.ts';
import { KeyGuard } from '../../../gateway/auth/keys/guard.ts';
import { errorResponse, toFnixError } from '../../../gateway/errors.ts';
import { acquireServed, createServeProxy } from '../../../gateway/proxy/http.ts';
import type { GatewayEnv } from '../../../gateway/routes/invoke.ts';
import { FnixError } from '../../../runtime/errors.ts';
import type { FunctionRegistry } from '../../../runtime/functions/registry.ts';
import type { FunctionVersion } from '../../../runtime/functions/version.ts';
import type { Logger } from '../../../runtime/log.ts';
import { RETIRED } from '../../../runtime/serve/group.ts';
import type { ServeInstances, Slot } from '../../../runtime/serve/instances.ts';

const quiet: Logger = { info: () => {}, warn: () => {}, error: () => {} };

function version(tag: string, access: 'public' | 'key'): FunctionVersion {
  return {
    name: 'lab',
    version: tag,
    key: `lab@${tag}`,
    manifest: { access, serve: { port: 8080 }, timeoutMs: 1000 },
  } as unknown as FunctionVersion;
}

const oldPublic = version('v1', 'public');
const newPrivate = version('v2', 'key');

/** Instances where `oldPublic` is retired under its waiting requests; asked-for versions are noted. */
function retiringInstances(asked: string[]): ServeInstances {
  const slot = { instance: { fn: newPrivate }, release: () => {} } as unknown as Slot;
  return {
    tryAcquire: () => undefined,
    acquire: async (fn: FunctionVersion) => {
      asked.push(fn.version);
      if (fn === oldPublic) {
        throw new FnixError('SHUTTING_DOWN', `version ${fn.version} of function 'lab' is no longer served`, { details: { function: 'lab', [RETIRED]: true } });
      }
      return slot;
    },
  } as unknown as ServeInstances;
}

const registry = { get: () => newPrivate } as unknown as FunctionRegistry;

let stateDir: string;
let store: FileKeyStore;
let guard: KeyGuard;

beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'fnix-recheck-'));
  store = await FileKeyStore.open({ stateDir });
  guard = new KeyGuard({ keys: store, limiter: new FailureLimiter(), log: quiet, metrics: { authFailed: () => {}, authRefused: () => {} } });
});
afterEach(async () => {
  await store.close();
  await rm(stateDir, { recursive: true, force: true });
});

/** The code acquireServed throws for a request with `headers` queued on `oldPublic`, or 'acquired'. */
async function moved(headers: Record<string, string>, asked: string[]): Promise<string> {
  const admit = (now: FunctionVersion) => void guard.check({ fn: now, headers, address: '10.0.0.1', route: 'invoke' });
  try {
    const slot = await acquireServed(retiringInstances(asked), registry, oldPublic, new AbortController().signal, admit);
    return slot.instance.fn === newPrivate ? 'acquired' : 'acquired elsewhere';
  } catch (error) {
    return (error as FnixError).code;
  }
}

describe('acquireServed', () => {
  it('checks the key again against the version it moves to, before taking a slot in it', async () => {
    const lab = await store.create({ function: 'lab' });
    const other = await store.create({ function: 'other' });
    const asked: string[] = [];
    expect(await moved({}, asked)).toBe('KEY_REQUIRED');
    expect(await moved({ 'x-fnix-key': other.key }, asked)).toBe('KEY_INVALID');
    await store.revoke(other.id);
    expect(await moved({ authorization: `Bearer ${other.key}` }, asked)).toBe('KEY_INVALID');
    // Refused ones never asked the new version for a slot.
    expect(asked).toEqual(['v1', 'v1', 'v1']);
    expect(await moved({ 'x-fnix-key': lab.key }, asked)).toBe('acquired');
    expect(asked).toEqual(['v1', 'v1', 'v1', 'v1', 'v2']);
  });
});

describe('the serve proxy', () => {
  it('refuses a queued request moved to a version now private, with its own headers checked', async () => {
    const app = new Hono<GatewayEnv>();
    const asked: string[] = [];
    const failures: string[] = [];
    const proxy = createServeProxy({
      registry,
      instances: retiringInstances(asked),
      maxBody: 1024,
      maxOutput: 1024,
      log: quiet,
      metrics: { invocationRefused: (name: string, _kind: string, code: string) => failures.push(`${name} ${code}`) } as never,
      keys: guard,
    });
    app.all('/fn/lab/*', (c) => {
      c.set('invocationId', 'test-id');
      return proxy(c, oldPublic);
    });
    app.onError((error) => errorResponse(toFnixError(error)));
    const server = createAdaptorServer({ fetch: app.fetch });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fn/lab/x`;
      const none = await fetch(url);
      expect(none.status).toBe(401);
      expect(((await none.json()) as { error: { code: string } }).error.code).toBe('KEY_REQUIRED');
      const wrong = await fetch(url, { headers: { 'x-fnix-key': `fnixk_${'a'.repeat(12)}_${'b'.repeat(43)}` } });
      expect(wrong.status).toBe(401);
      expect(((await wrong.json()) as { error: { code: string } }).error.code).toBe('KEY_INVALID');
      expect(asked).toEqual(['v1', 'v1']);
      // The key check's refusals add no series with the function's label.
      expect(failures).toEqual([]);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
