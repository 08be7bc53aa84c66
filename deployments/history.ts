/**
 * @module
 * The deployment history kept: the newest records (and the active one), the refs that keep their
 * commits, and the GC roots of the ready ones, so that `nix-collect-garbage` cannot remove what a
 * rollback needs; the rest go.
 */
import { DEPLOYMENT_REFS } from './activate.ts';
import type { DeployContext } from './context.ts';
import type { Held } from './lock.ts';
import type { DeploymentRecord } from './records.ts';

/** Keeps the newest `historyLimit` records and the active one, with their refs and GC roots. */
export async function pruneHistory(ctx: DeployContext, _held: Held, activeId: string): Promise<void> {
  const records = await ctx.store.list();
  const kept: DeploymentRecord[] = [];
  for (const [index, record] of records.entries()) {
    if (index < ctx.historyLimit || record.id === activeId) kept.push(record);
    else {
      await ctx.store.remove(record.id);
      await ctx.repository.git(['update-ref', '-d', `${DEPLOYMENT_REFS}${record.id}`], { reject: false });
    }
  }
  await ctx.resolver.pruneRoots(kept.filter((r) => r.result === 'ready').flatMap((r) => r.functions.map((f) => f.rootKey)));
}
