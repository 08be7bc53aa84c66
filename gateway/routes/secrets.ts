/**
 * @module
 * The secrets' API, behind the deploy token (`Authorization: Bearer <token>`), mounted at /api:
 *
 *     PUT    /api/secrets/<NAME>   body: the raw value, 1 byte to 64 KiB -> {"name","setAt","restarted":[functions]}
 *     GET    /api/secrets                                              -> {"secrets":[{"name","setAt","usedBy":[functions]}]}
 *     DELETE /api/secrets/<NAME>                                       -> {"name","removed":true}
 *
 * No route ever answers with a value, and no error quotes one. Removing a secret that a function of
 * the live deployment declares is refused (409 SECRET_IN_USE, naming them): deploy without it first;
 * so is one a deployment being activated declares (the store refuses it: the activation holds it).
 * The store and the rotation do the work (runtime/secrets/); this file reads requests and writes answers.
 */
import type { HttpBindings } from '@hono/node-server';
import { type Context, Hono } from 'hono';
import { FnixError } from '../../runtime/errors.ts';
import type { FunctionRegistry } from '../../runtime/functions/registry.ts';
import { SECRET_NAME_PATTERN } from '../../runtime/functions/manifest.ts';
import { functionsDeclaring } from '../../runtime/secrets/delivery.ts';
import type { SecretRotation } from '../../runtime/secrets/rotation.ts';
import type { SecretStore } from '../../runtime/secrets/store.ts';
import type { TokenGuard } from '../auth/guard.ts';

/** The largest value a secret may have. */
export const MAX_SECRET_BYTES = 64 * 1024;

/** What the secrets API needs. */
export interface SecretsApiOptions {
  secrets: Pick<SecretStore, 'list' | 'has' | 'set' | 'remove'>;
  /** The restarts a change starts (serve functions declaring the secret). */
  rotation: Pick<SecretRotation, 'latest'>;
  /** What is served: which functions of the live deployment declare a secret. */
  registry: Pick<FunctionRegistry, 'versions'>;
  token: TokenGuard;
}

/** The secrets routes, to mount at /api. */
export function createSecretsApi(options: SecretsApiOptions): Hono<{ Bindings: HttpBindings }> {
  const { secrets, rotation, registry, token } = options;
  const api = new Hono<{ Bindings: HttpBindings }>();
  api.use('/secrets', requireToken(token));
  api.use('/secrets/*', requireToken(token));
  const usedBy = (name: string) => functionsDeclaring(registry.versions(), name).sort();

  api.get('/secrets', (c) => c.json({ secrets: secrets.list().map((info) => ({ ...info, usedBy: usedBy(info.name) })) }));
  api.put('/secrets/:name', async (c) => {
    const name = checkName(c.req.param('name'));
    const value = await readValue(c);
    let info: Awaited<ReturnType<typeof secrets.set>>;
    try {
      info = await secrets.set(name, value);
    } finally {
      value.fill(0);
    }
    // The store told the rotation as it set the value: serve functions declaring it are restarting.
    const restart = rotation.latest(name);
    const restarted = restart ? await restart.done : [];
    return c.json({ name: info.name, setAt: info.setAt, restarted });
  });
  api.delete('/secrets/:name', async (c) => {
    const name = checkName(c.req.param('name'));
    if (!secrets.has(name)) throw notFound(name);
    const users = usedBy(name);
    if (users.length > 0) {
      throw new FnixError(
        'SECRET_IN_USE',
        `the secret ${name} is declared by ${users.map((f) => `'${f}'`).join(', ')} in the live deployment: deploy ${users.length === 1 ? 'it' : 'them'} without it first, then remove it`,
        { details: { secret: name, functions: users } },
      );
    }
    if (!(await secrets.remove(name))) throw notFound(name);
    return c.json({ name, removed: true });
  });
  return api;
}

/** The deploy token, on the secrets routes. */
function requireToken(token: TokenGuard) {
  return async function requireDeployToken(c: Context<{ Bindings: HttpBindings }>, next: () => Promise<void>) {
    token.bearer({ route: 'api', authorization: c.req.header('authorization'), address: c.env.incoming.socket.remoteAddress ?? '' });
    await next();
  };
}

/** The name, checked against the manifest's pattern. Throws SECRET_INVALID. */
function checkName(name: string): string {
  if (SECRET_NAME_PATTERN.test(name)) return name;
  throw new FnixError(
    'SECRET_INVALID',
    `${JSON.stringify(name.slice(0, 80))} is not a secret name: upper-case letters, digits and underscores, starting with a letter or an underscore, such as STRIPE_KEY (at most 128)`,
    { details: { secret: name.slice(0, 80) } },
  );
}

function notFound(name: string): FnixError {
  return new FnixError('SECRET_NOT_FOUND', `no secret named ${name} is set; GET /api/secrets lists them`, { details: { secret: name } });
}

/**
 * The request's body, 1 byte to {@link MAX_SECRET_BYTES}, read from the socket with that bound (a
 * lying or missing Content-Length changes nothing). Throws SECRET_INVALID, which never quotes it.
 */
async function readValue(c: Context<{ Bindings: HttpBindings }>): Promise<Buffer> {
  const tooLarge = () =>
    new FnixError('SECRET_INVALID', `a secret's value is at most ${MAX_SECRET_BYTES} bytes (64 KiB)`, { details: { maxBytes: MAX_SECRET_BYTES } });
  const declared = Number(c.req.header('content-length') ?? Number.NaN);
  if (declared > MAX_SECRET_BYTES) throw tooLarge();
  const chunks: Buffer[] = [];
  let length = 0;
  const wipe = () => {
    for (const chunk of chunks) chunk.fill(0);
  };
  for await (const chunk of c.env.incoming as AsyncIterable<Buffer>) {
    length += chunk.length;
    chunks.push(chunk);
    if (length > MAX_SECRET_BYTES) {
      wipe();
      throw tooLarge();
    }
  }
  if (length === 0) throw new FnixError('SECRET_INVALID', "a secret's value is 1 byte at least: send it as the request's body");
  const value = Buffer.concat(chunks, length);
  wipe();
  return value;
}
