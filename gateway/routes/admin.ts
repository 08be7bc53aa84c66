/**
 * @module
 * The admin API, behind the deploy token (`Authorization: Bearer <token>`): what is served, the
 * deployment history, and activating any earlier ready deployment (a rollback, or forward again).
 */
import { Hono } from 'hono';
import type { Deployer } from '../../runtime/deploy/deployer.ts';
import type { DeploymentRecord } from '../../runtime/deploy/records.ts';
import type { Held } from '../../runtime/deploy/lock.ts';
import { FnixError } from '../../runtime/errors.ts';
import type { FunctionRegistry } from '../../runtime/functions/registry.ts';
import type { HttpBindings } from '@hono/node-server';
import type { TokenGuard } from '../auth/guard.ts';

/** What the admin API needs. */
export interface AdminOptions {
  deployer: Deployer;
  registry: FunctionRegistry;
  token: TokenGuard;
  /** How long an activation waits for a push under way. @default 60000 */
  lockWaitMs?: number;
}

/** A deployment as the API shows it. */
type DeploymentView = Omit<DeploymentRecord, 'result'> & { status: 'active' | 'superseded' | 'ready' | 'refused' };

/** The admin routes, to mount at /api. */
export function createAdminApi(options: AdminOptions): Hono<{ Bindings: HttpBindings }> {
  const { deployer, registry, token } = options;
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
    const currentId = await deployer.store.current();
    const record = currentId ? await deployer.store.get(currentId) : undefined;
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
    const currentId = await deployer.store.current();
    return c.json({ deployments: (await deployer.store.list()).map((r) => view(r, currentId)) });
  });
  api.post('/deployments/:id/activate', async (c) => {
    const id = c.req.param('id');
    if (!(await deployer.store.get(id)))
      throw new FnixError('DEPLOYMENT_NOT_FOUND', `no deployment ${JSON.stringify(id.slice(0, 80))}; GET /api/deployments lists them`);
    let held: Held;
    try {
      held = await deployer.lock.acquire(`the activation of ${id}`, options.lockWaitMs ?? 60_000);
    } catch (error) {
      throw new FnixError('DEPLOY_IN_PROGRESS', `${(error as Error).message}; try again when it is done`);
    }
    try {
      const record = await deployer.activate(id);
      return c.json(view(record, record.id));
    } finally {
      held.release();
    }
  });
  return api;
}
