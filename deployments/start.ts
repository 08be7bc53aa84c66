/**
 * @module
 * What is served at start: the active deployment, restored; or, when there is none (or it can no
 * longer be served), main, if it moved without being activated (fnix stopped between the two); or, with
 * an empty repository, the functions folder imported as the first commit.
 */
import { activateDeployment } from './activate.ts';
import { checkCommit } from './check.ts';
import type { DeployContext } from './context.ts';
import { importFolder } from './import.ts';
import type { Held } from './lock.ts';
import { DEPLOY_REF } from './repository.ts';
import { restoreActive } from './restore.ts';

/** How long the start waits for the deploy lock (nothing else holds it then, but a test may). */
const START_WAIT_MS = 60_000;

/** Serves what should be served at start, holding the deploy lock. */
export async function serveAtStart(ctx: DeployContext, functionsDir: string | undefined): Promise<void> {
  await ctx.lock.with('the start', START_WAIT_MS, async (held) => {
    // A deployment that cannot be restored (its commit gone from the repository, say) must not stop fnix
    // from starting, again and again: main is deployed instead, as when there is none.
    const restored = await restoreActive(ctx, held).catch((error: unknown) => {
      ctx.log.error('the active deployment could not be served again; deploying main instead', {
        error: error instanceof Error ? error.message : String(error),
      });
      return undefined;
    });
    if (restored) return;
    const main = await ctx.repository.resolve(DEPLOY_REF);
    if (main) await deployMain(ctx, held, main);
    else if (functionsDir) await importAtFirstStart(ctx, held, functionsDir);
  });
}

/** main moved but was never activated: it is checked and activated now. */
async function deployMain(ctx: DeployContext, held: Held, main: string): Promise<void> {
  // The first import's commit is checked as an import again: its broken functions do not stop the rest.
  const imported = (await ctx.store.list()).some((r) => r.commit === main && r.source === 'import');
  const { record } = await checkCommit(ctx, held, main, { progress: logProgress(ctx), source: imported ? 'import' : 'push' });
  if (record.result === 'ready') await activateDeployment(ctx, held, record.id);
  else for (const line of (record.reason ?? '').split('\n')) ctx.log.error(`deploy: ${line}`);
}

async function importAtFirstStart(ctx: DeployContext, held: Held, functionsDir: string): Promise<void> {
  const { record } = await importFolder(ctx, held, functionsDir, logProgress(ctx));
  if (record.result === 'refused') {
    ctx.log.error(`the functions folder ${functionsDir} was not deployed; fix it and restart, or push a fix`, { deployment: record.id });
    for (const line of (record.reason ?? '').split('\n')) ctx.log.error(`deploy: ${line}`);
  }
}

/** A start's deployment progress goes to the log. */
function logProgress(ctx: DeployContext): (line: string) => void {
  return (line) => ctx.log.info(`deploy: ${line}`);
}
