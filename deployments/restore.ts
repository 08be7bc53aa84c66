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
  // Nothing is served yet: a serve function that cannot start now is served anyway (see warm).
  await warm(ctx, prepared, record.id);
  serve(ctx, prepared);
  // Served by now: tidying the history must not undo that.
  await pruneHistory(ctx, held, record.id).catch((error: unknown) => ctx.log.warn('pruning the deployment history failed', { error: String(error) }));
  ctx.log.info('deployment restored', { id: record.id, commit: record.commit.slice(0, 12), functions: prepared.versions.length, broken: prepared.broken.size });
  return record;
}
