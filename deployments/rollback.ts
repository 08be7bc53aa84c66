/**
 * @module
 * Activating an earlier deployment again, through the admin API: a rollback, or forward again. It
 * waits for a push under way (pushes hold the lock from their checks to their activation), for a
 * minute at most.
 */
import { FnixError, isFnixError } from '../runtime/errors.ts';
import { activateDeployment } from './activate.ts';
import type { DeployContext } from './context.ts';
import type { DeploymentRecord } from './records.ts';

/** How long a rollback waits for the deploy lock. */
export const ROLLBACK_WAIT_MS = 60_000;

/** Makes deployment `id` active again. Throws DEPLOYMENT_NOT_FOUND, DEPLOYMENT_REFUSED or DEPLOY_IN_PROGRESS. */
export async function rollback(ctx: DeployContext, id: string, waitMs = ROLLBACK_WAIT_MS): Promise<DeploymentRecord> {
  // Unknown ids are refused before any wait.
  if (!(await ctx.store.get(id)))
    throw new FnixError('DEPLOYMENT_NOT_FOUND', `no deployment ${JSON.stringify(id.slice(0, 80))}; GET /api/deployments lists them`);
  try {
    return await ctx.lock.with(`the activation of ${id}`, waitMs, (held) =>
      ctx.goLive(
        { id, versions: ctx.prepared.get(id)?.versions },
        () => activateDeployment(ctx, held, id),
        (line) => ctx.log.info(`rollback: ${line}`),
      ),
    );
  } catch (error) {
    if (isFnixError(error, 'DEPLOY_IN_PROGRESS')) throw new FnixError('DEPLOY_IN_PROGRESS', `${error.message}; try again when it is done`, { cause: error });
    throw error;
  }
}
