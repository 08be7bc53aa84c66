/**
 * @module
 * Activating a deployment: it becomes the one served, at once. The record first (durably), then the
 * registry, in one swap. Invocations under way finish on the version they started with; idle
 * containers of versions no longer served go. A deployment checked a while ago, or before a restart,
 * is built again from its commit first (quick: Nix's store and the builds are cached).
 */
import { FnixError } from '../runtime/errors.ts';
import { secretUses } from '../runtime/functions/manifest.ts';
import { buildCommit, replaceStaleContainers } from './build.ts';
import { missingSecrets } from './check.ts';
import type { DeployContext, Prepared } from './context.ts';
import { pruneHistory } from './history.ts';
import type { Held } from './lock.ts';
import type { DeploymentRecord } from './records.ts';

/** Where each activated deployment's commit is kept (hidden from clients: transfer.hideRefs). */
export const DEPLOYMENT_REFS = 'refs/fnix/deployments/';

/** Makes deployment `id` the one served. Throws DEPLOYMENT_NOT_FOUND or DEPLOYMENT_REFUSED. */
export async function activateDeployment(ctx: DeployContext, held: Held, id: string): Promise<DeploymentRecord> {
  const begin = performance.now();
  const { store } = ctx;
  const record = await store.get(id);
  if (!record) throw new FnixError('DEPLOYMENT_NOT_FOUND', `no deployment ${JSON.stringify(id)}; GET /api/deployments lists them`);
  if (record.result !== 'ready') {
    throw new FnixError('DEPLOYMENT_REFUSED', `deployment ${id} was refused, so it cannot be activated: ${record.reason ?? ''}`, {
      details: { deployment: id },
    });
  }
  if (!(await ctx.repository.has(record.commit))) {
    // It passed its checks, but git did not take the push (it died, or main moved): the objects are gone.
    throw new FnixError(
      'DEPLOYMENT_REFUSED',
      `deployment ${id} never went live, and its commit ${record.commit.slice(0, 12)} is not in the repository; push it again`,
      {
        details: { deployment: id },
      },
    );
  }
  let prepared = ctx.prepared.get(id);
  if (!prepared) {
    // An older deployment: built again from its commit (quick, from Nix's store and the build cache).
    prepared = await prepareRecorded(ctx, held, record);
    const failed = newlyBroken(record, prepared.broken);
    if (failed) {
      throw new FnixError('DEPLOYMENT_REFUSED', `deployment ${id} can no longer be built: ${failed[0]}: ${failed[1].message}`, {
        details: { deployment: id },
      });
    }
  }
  const { versions } = prepared;
  // The secrets its functions declare are held from here to the switch (the store refuses to remove
  // them; once it is live, the live registry keeps them), and checked in the same turn: a removal
  // under way by now is no longer listed, and one asked for later is refused (SECRET_IN_USE).
  const release = ctx.holdSecrets(versions.flatMap((version) => secretUses(version.manifest).map((use) => use.name)));
  try {
    // A secret removed since the deployment was checked (a rollback to it, say): refused before anything changes.
    const unset = [...missingSecrets(ctx, versions).values()];
    if (unset.length > 0) {
      throw new FnixError(
        'DEPLOYMENT_REFUSED',
        `deployment ${id} cannot be activated: ${unset.map((error) => error.message.replace(/, then push again$/, '')).join('; ')}`,
        {
          details: { deployment: id, missingSecrets: unset.map((error) => error.details) },
        },
      );
    }
    await switchTo(ctx, held, record, prepared, begin);
  } finally {
    release();
  }
  return record;
}

/** From the warm start to the switch and after: what {@link activateDeployment} does once its checks passed. */
async function switchTo(ctx: DeployContext, held: Held, record: DeploymentRecord, prepared: Prepared, begin: number): Promise<void> {
  const { store, log } = ctx;
  const { id } = record;
  const { versions, broken } = prepared;
  // The new version's serve instances ready first (before the record says it is active).
  await warm(ctx, prepared, id);
  // A ref of its own keeps the commit through a force-push and `git gc`, so that a rollback finds it.
  // Set before the record says it is active; a failure to set it costs that protection only.
  const pinned = await ctx.repository.git(['update-ref', `${DEPLOYMENT_REFS}${id}`, record.commit], { reject: false });
  if (pinned.exitCode !== 0) log.warn("the deployment's commit could not be kept by a ref of its own", { id, error: String(pinned.stderr).trim() });
  if (!(await store.activate(record, new Date()))) log.warn('the deployment is active, but its record could not be updated with the time', { id });
  serve(ctx, prepared);
  // Live by now: tidying the history must not make the activation look failed.
  await pruneHistory(ctx, held, id).catch((error: unknown) => log.warn('pruning the deployment history failed', { error: String(error) }));
  // A push counts from the start of its checks; a rollback, its activation alone.
  ctx.onDeployment(broken.size > 0 ? 'partial' : 'activated', ctx.prepared.takeCheckMs(id) + performance.now() - begin);
  log.info('deployment active', { id, commit: record.commit.slice(0, 12), functions: versions.map((v) => v.name).join(',') });
}

/**
 * Starts the serve functions' minInstances of `prepared` and waits until they are ready, so that the
 * switch leaves no request waiting for a server to start. When one cannot start, deployment `id` is
 * refused (DEPLOYMENT_REFUSED) and what was started for it drains again, so that everything stays as
 * it was; with nothing served yet (a first start, a restart), serving what can start beats serving
 * nothing, so that is logged and the instances keep being retried.
 */
export async function warm(ctx: DeployContext, prepared: Prepared, id: string): Promise<void> {
  try {
    await ctx.instances.warm(prepared.versions);
  } catch (error) {
    if (ctx.registry.versions().length === 0) {
      ctx.log.error('serve instances did not start; serving anyway', { id, error: (error as Error).message });
      return;
    }
    ctx.instances.serve(ctx.registry.versions().map((v) => v.key));
    throw new FnixError('DEPLOYMENT_REFUSED', `deployment ${id} was not activated: ${(error as Error).message}`, { details: { deployment: id }, cause: error });
  }
}

/**
 * Serves `prepared`'s versions from now on (the registry in one swap; the pool keeps only their
 * containers; other versions' serve instances finish what they hold, then stop). {@link warm} first.
 */
export function serve(ctx: DeployContext, prepared: Prepared): void {
  ctx.registry.replaceAll(prepared.versions, prepared.broken);
  const keys = prepared.versions.map((v) => v.key);
  ctx.pool.serve(keys);
  ctx.instances.serve(keys);
  for (const [name, error] of prepared.broken) ctx.log.error('function not served', { function: name, code: error.code, error: error.message });
}

/**
 * Builds a recorded deployment's commit again (no smoke check: it passed before), serving the store paths
 * its record names while the store has them. A function that no longer builds is held broken, and so are
 * those its record held broken.
 */
export async function prepareRecorded(ctx: DeployContext, _held: Held, record: DeploymentRecord): Promise<Prepared> {
  const { versions, problems, failed } = await buildCommit(ctx, record.commit, {}, `${record.id}-rebuild-`, {}, record);
  replaceStaleContainers(ctx, versions);
  const broken = new Map<string, FnixError>();
  for (const [name, found] of problems) if (name) broken.set(name, new FnixError('FUNCTION_BUILD_FAILED', found.join('; ')));
  // A problem of the whole commit (its packages.nix could not be written out, say) holds every function broken.
  const whole = problems.get('');
  if (whole) for (const { name } of record.functions) broken.set(name, new FnixError('FUNCTION_BUILD_FAILED', whole.join('; ')));
  for (const [name, { error }] of failed) {
    broken.set(name, error instanceof FnixError ? error : new FnixError('FUNCTION_BUILD_FAILED', String(error), { cause: error }));
  }
  // Functions that failed their smoke check at import are held broken again, not served.
  for (const { name, code, problem } of record.broken ?? []) {
    if (!broken.has(name)) broken.set(name, new FnixError(code, problem));
  }
  const prepared = { versions: versions.filter((version) => !broken.has(version.name)), broken };
  if (!newlyBroken(record, broken)) ctx.prepared.set(record.id, prepared);
  return prepared;
}

/** A function broken now that the record did not hold broken when it passed its checks, if any. */
function newlyBroken(record: DeploymentRecord, broken: ReadonlyMap<string, FnixError>): [string, FnixError] | undefined {
  return [...broken].find(([name]) => !record.broken?.some((b) => b.name === name));
}
