/**
 * @module
 * The admin API, behind the deploy token (`Authorization: Bearer <token>`): what is served, the
 * deployment history, and activating any earlier ready deployment (a rollback, or forward again).
 * The operations are deployments/'s, and the closures' sizes runtime/nix/closure.ts's; this file only
 * reads requests and writes answers.
 */
import type { HttpBindings } from '@hono/node-server';
import { Hono } from 'hono';
import type { Deployments } from '../../deployments/deployments.ts';
import type { DeploymentRecord } from '../../deployments/records.ts';
import { FnixError } from '../../runtime/errors.ts';
import type { FunctionRegistry } from '../../runtime/functions/registry.ts';
import type { ServeInstances } from '../../runtime/serve/instances.ts';
import { HOST_STORE_SIZES, type MeasuredClosure, type StorePathSizes } from '../../runtime/nix/closure.ts';
import type { TokenGuard } from '../auth/guard.ts';

/** What the admin API needs. */
export interface AdminOptions {
  deployments: Pick<Deployments, 'records' | 'rollback'>;
  registry: FunctionRegistry;
  /** Serve functions' instances, shown with their function. */
  instances: Pick<ServeInstances, 'list'>;
  token: TokenGuard;
  /** Measures the functions' closures. @default HOST_STORE_SIZES, the cache of the host's store */
  sizes?: StorePathSizes;
}

/** A deployment as the API shows it. */
type DeploymentView = Omit<DeploymentRecord, 'result'> & { status: 'active' | 'superseded' | 'ready' | 'refused' };

/** The admin routes, to mount at /api. */
export function createAdminApi(options: AdminOptions): Hono<{ Bindings: HttpBindings }> {
  const { deployments, registry, instances, token, sizes = HOST_STORE_SIZES } = options;
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

  // The closures of the functions being served (a broken one has none), measured together: one query
  // for the store paths not yet known, and their union counts each path once, however many share it.
  const measureClosures = async (functions: readonly { name: string }[]) => {
    const closureOf = new Map(registry.versions().map((v) => [v.name, v.resolution.closure]));
    const served = functions.map((f) => f.name).filter((name) => closureOf.has(name));
    const { each, union } = await sizes.measureAll(served.map((name) => closureOf.get(name)!));
    return { byName: new Map(served.map((name, i) => [name, each[i]!])), union };
  };
  const totals = ({ count, totalBytes }: MeasuredClosure) => ({ count, totalBytes });

  api.get('/functions', async (c) => {
    const functions = await servedFunctions();
    const { byName, union } = await measureClosures(functions);
    return c.json({
      functions: functions.map((f) => (byName.has(f.name) ? { ...f, closure: totals(byName.get(f.name)!) } : f)),
      closure: totals(union),
    });
  });
  api.get('/functions/:name', async (c) => {
    const name = c.req.param('name');
    const found = (await servedFunctions()).find((f) => f.name === name);
    if (!found)
      throw new FnixError('FUNCTION_NOT_FOUND', `no function named ${JSON.stringify(name.slice(0, 80))} is deployed`, {
        details: { function: name.slice(0, 80) },
      });
    const closure = (await measureClosures([found])).byName.get(name);
    const serving = registry.versions().find((v) => v.name === name)?.manifest.serve;
    const withInstances = serving ? { ...found, serve: serving, instances: instances.list(name) } : found;
    return c.json(closure ? { ...withInstances, closure: { ...totals(closure), paths: closure.paths } } : withInstances);
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
