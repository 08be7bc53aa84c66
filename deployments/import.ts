/**
 * @module
 * The first start, with an empty repository: the functions folder becomes the first commit of main,
 * deployed through the same checks as a push, but served in part when some of its functions are
 * broken. When no function passes, nothing is served, main stays unborn, and the next start tries again.
 */
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { activateDeployment } from './activate.ts';
import { type CheckedDeployment, checkCommit } from './check.ts';
import type { DeployContext, Progress } from './context.ts';
import type { Held } from './lock.ts';
import { DEPLOY_REF, type QuarantineEnv, ZERO_OID } from './repository.ts';
import { FUNCTIONS_FOLDER } from './tree.ts';

/** Commits `dir` as `functions/` (without moving any ref), checks it as an import, and activates it while main is unborn. */
export async function importFolder(ctx: DeployContext, held: Held, dir: string, progress: Progress): Promise<CheckedDeployment> {
  const commit = await commitFolder(ctx, dir);
  const checked = await checkCommit(ctx, held, commit, { progress, source: 'import' });
  if (checked.record.result === 'ready') {
    // Only while main is still unborn: a push that landed meanwhile wins, and is what is served.
    const updated = await ctx.repository.git(['update-ref', DEPLOY_REF, commit, ZERO_OID], { reject: false });
    if (updated.exitCode === 0) await activateDeployment(ctx, held, checked.record.id);
    else ctx.log.warn('main was created meanwhile; the import is not activated', { deployment: checked.record.id });
  }
  return checked;
}

/** The commit of `dir` as `functions/`, made with an index of its own in a staging folder. */
async function commitFolder(ctx: DeployContext, dir: string): Promise<string> {
  const work = await mkdtemp(join(ctx.stagingDir, 'import-'));
  try {
    await cp(dir, join(work, FUNCTIONS_FOLDER), { recursive: true, verbatimSymlinks: true });
    const env = { GIT_INDEX_FILE: join(work, '.index'), GIT_WORK_TREE: work } as QuarantineEnv;
    // --force: the folder is taken as it is, files its .gitignore names included.
    await ctx.repository.git(['add', '--all', '--force', '--', FUNCTIONS_FOLDER], { env });
    const tree = String((await ctx.repository.git(['write-tree'], { env })).stdout).trim();
    const identity = { GIT_AUTHOR_NAME: 'fnix', GIT_AUTHOR_EMAIL: 'fnix@localhost', GIT_COMMITTER_NAME: 'fnix', GIT_COMMITTER_EMAIL: 'fnix@localhost' };
    const commit = await ctx.repository.git(['commit-tree', tree, '-m', `Functions imported from ${dir}`], { env: identity as QuarantineEnv });
    return String(commit.stdout).trim();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
