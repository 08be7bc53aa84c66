/**
 * @module
 * At start: the active deployment served again, rebuilt from its commit (Nix and the builds are cached,
 * so this is quick). A function that no longer builds is reported as broken.
 */
import { prepareRecorded, serve, warm } from './activate.ts';
import type { DeployContext } from './context.ts';
import { pruneHistory } from './history.ts';
import type { Held } from './lock.ts';
import type { DeploymentRecord } from './records.ts';

/** Serves the active deployment again; undefined when there is none. */
export async function restoreActive(ctx: DeployContext, held: Held): Promise<DeploymentRecord | undefined> {
  const id = await ctx.store.current();
  const record = id === undefined ? undefined : await ctx.store.get(id);
  if (!record) return undefined;
  const prepared = await prepareRecorded(ctx, held, record);
  // Nothing was served before: a serve function that cannot start now is served anyway, and its
  // instances keep being retried (its requests get the start's error meanwhile).
  await warm(ctx, prepared).catch((error: unknown) => ctx.log.error('serve instances did not start', { error: String(error) }));
  serve(ctx, prepared);
  // Served by now: tidying the history must not undo that.
  await pruneHistory(ctx, held, record.id).catch((error: unknown) => ctx.log.warn('pruning the deployment history failed', { error: String(error) }));
  ctx.log.info('deployment restored', { id: record.id, commit: record.commit.slice(0, 12), functions: prepared.versions.length, broken: prepared.broken.size });
  return record;
}
