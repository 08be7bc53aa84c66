/**
 * @module
 * The admin API, behind the deploy token (`Authorization: Bearer <token>`): what is served, the
 * deployment history, and activating any earlier ready deployment (a rollback, or forward again).
 * The operations are deployments/'s; this file only reads requests and writes answers.
 */
import type { HttpBindings } from '@hono/node-server';
import { Hono } from 'hono';
import type { Deployments } from '../../deployments/deployments.ts';
import type { DeploymentRecord } from '../../deployments/records.ts';
import { FnixError } from '../../runtime/errors.ts';
import type { FunctionRegistry } from '../../runtime/functions/registry.ts';
import type { TokenGuard } from '../auth/guard.ts';

/** What the admin API needs. */
export interface AdminOptions {
  deployments: Pick<Deployments, 'records' | 'rollback'>;
  registry: FunctionRegistry;
  token: TokenGuard;
}

/** A deployment as the API shows it. */
type DeploymentView = Omit<DeploymentRecord, 'result'> & { status: 'active' | 'superseded' | 'ready' | 'refused' };

/** The admin routes, to mount at /api. */
export function createAdminApi(options: AdminOptions): Hono<{ Bindings: HttpBindings }> {
  const { deployments, registry, token } = options;
  const { records } = deployments;
  const api = new Hono<{ Bindings: HttpBindings }>();
  api.use('*', async function requireToken(c, next) {
    token.bearer({ route: 'api', authorization: c.req.header('authorization'), address: c.env.incoming.socket.remoteAddress ?? '' });
    await next();
  });

  const view = (record: DeploymentRecord, currentId: string | undefined): DeploymentView => {
    const { result, ...rest } = record;
    // `ready`: it passed its checks but never went live (its push did not complete).
    const status = result === 'refused' ? 'refused' : record.id === currentId ? 'active' : record.activations.length > 0 ? 'superseded' : 'ready';
    return { ...rest, status, functions: rest.functions.map(({ rootKey: _rootKey, ...f }) => f) as DeploymentRecord['functions'] };
  };
  const servedFunctions = async () => {
    const currentId = await records.current();
    const record = currentId ? await records.get(currentId) : undefined;
    const byName = new Map(record?.functions.map((f) => [f.name, f]));
    return registry.list().map((entry) => {
      const deployed = byName.get(entry.name);
      return {
        name: entry.name,
        status: entry.status,
        deployment: record?.id,
        commit: record?.commit,
        ...(deployed ? (({ rootKey: _rootKey, ...f }) => f)(deployed) : {}),
        ...(entry.status === 'broken' ? { error: entry.error } : {}),
      };
    });
  };

  api.get('/functions', async (c) => c.json({ functions: await servedFunctions() }));
  api.get('/functions/:name', async (c) => {
    const name = c.req.param('name');
    const found = (await servedFunctions()).find((f) => f.name === name);
    if (!found)
      throw new FnixError('FUNCTION_NOT_FOUND', `no function named ${JSON.stringify(name.slice(0, 80))} is deployed`, {
        details: { function: name.slice(0, 80) },
      });
    return c.json(found);
  });
  api.get('/deployments', async (c) => {
    const currentId = await records.current();
    return c.json({ deployments: (await records.list()).map((r) => view(r, currentId)) });
  });
  api.post('/deployments/:id/activate', async (c) => {
    const record = await deployments.rollback(c.req.param('id'));
    return c.json(view(record, record.id));
  });
  return api;
}
