/**
 * @module
 * The invoke keys' API, behind the deploy token (`Authorization: Bearer <token>`), mounted at /api:
 *
 *     POST   /api/keys        {"name"?, "function"?}  -> 201 {"id","key","name","function","createdAt"}
 *     GET    /api/keys                                -> {"keys":[{"id","name","function","createdAt","lastUsedAt"}]}
 *     DELETE /api/keys/<id>                           -> {"id","revoked":true}, or 404 KEY_NOT_FOUND
 *
 * `key`, the key's whole text, is in the answer to POST and nowhere else, ever. A key may name a
 * function that is not deployed (yet); the name must be a valid function name. The store does the work
 * (gateway/auth/keys/); this file reads requests and writes answers.
 */
import type { HttpBindings } from '@hono/node-server';
import { type Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { FnixError } from '../../runtime/errors.ts';
import type { TokenGuard } from '../auth/guard.ts';
import type { KeyStore } from '../auth/keys/store.ts';

/** The largest body POST /api/keys takes. */
const MAX_BODY = 4096;

/** What the keys API needs. */
export interface KeysApiOptions {
  keys: Pick<KeyStore, 'create' | 'list' | 'revoke'>;
  token: TokenGuard;
}

/** The keys routes, to mount at /api. */
export function createKeysApi(options: KeysApiOptions): Hono<{ Bindings: HttpBindings }> {
  const { keys, token } = options;
  const api = new Hono<{ Bindings: HttpBindings }>();
  api.use('/keys', requireToken(token));
  api.use('/keys/*', requireToken(token));

  api.post(
    '/keys',
    bodyLimit({
      maxSize: MAX_BODY,
      onError: () => {
        throw new FnixError('BODY_TOO_LARGE', `a key request's body is at most ${MAX_BODY} bytes`, { details: { maxBody: MAX_BODY } });
      },
    }),
    async (c) => {
      const created = await keys.create(readKeyRequest(await c.req.text()));
      return c.json({ id: created.id, key: created.key, name: created.name, function: created.function, createdAt: created.createdAt }, 201);
    },
  );
  api.get('/keys', (c) => c.json({ keys: keys.list() }));
  api.delete('/keys/:id', async (c) => {
    const revoked = await keys.revoke(c.req.param('id'));
    return c.json({ id: revoked.id, revoked: true });
  });
  return api;
}

/** The deploy token, on the keys routes alone (the other /api routes check it themselves). */
function requireToken(token: TokenGuard) {
  return async function requireDeployToken(c: Context<{ Bindings: HttpBindings }>, next: () => Promise<void>) {
    token.bearer({ route: 'api', authorization: c.req.header('authorization'), address: c.env.incoming.socket.remoteAddress ?? '' });
    await next();
  };
}

/** POST /api/keys's body: empty, or a JSON object with `name` and `function`, each a string or null. */
function readKeyRequest(text: string): { name: string | null; function: string | null } {
  if (text.trim() === '') return { name: null, function: null };
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new FnixError('BAD_REQUEST', 'the body is not JSON: send {"name": "...", "function": "..."} (both optional; no function is every function)');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new FnixError('BAD_REQUEST', 'the body must be a JSON object, such as {"name": "ci", "function": "hello"}');
  }
  const fields = body as Record<string, unknown>;
  const unknown = Object.keys(fields).filter((field) => field !== 'name' && field !== 'function');
  if (unknown.length > 0) throw new FnixError('BAD_REQUEST', `unknown field ${JSON.stringify(unknown[0]!.slice(0, 40))}: a key takes "name" and "function"`);
  for (const field of ['name', 'function'] as const) {
    const value = fields[field];
    if (value !== undefined && value !== null && typeof value !== 'string') throw new FnixError('BAD_REQUEST', `"${field}" must be a string (or null)`);
  }
  return { name: (fields['name'] as string | null | undefined) ?? null, function: (fields['function'] as string | null | undefined) ?? null };
}
