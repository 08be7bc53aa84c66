/**
 * @module
 * A push, as git's hooks report it: pre-receive checks and builds main's new commit while git holds the
 * push in quarantine (refusing leaves main where it was), and post-receive activates it once git has
 * moved main. The deploy lock is held from one to the other, so pushes never interleave.
 */
import { activateDeployment } from './activate.ts';
import { checkCommit } from './check.ts';
import type { DeployContext, Progress } from './context.ts';
import type { Held } from './lock.ts';
import { DEPLOY_REF, type QuarantineEnv, ZERO_OID } from './repository.ts';

/** One line of a hook's stdin: `<old> <new> <ref>`. */
export interface RefUpdate {
  old: string;
  new: string;
  ref: string;
}

/** How long a push waits for another deployment before it is refused. */
export const PUSH_WAIT_MS = 120_000;
/**
 * How long a push that passed its checks may take to reach post-receive (or end) before it is settled
 * anyway: a client that stopped reading can block git, and the lock must not stay held for good.
 */
export const PENDING_LIMIT_MS = 5 * 60_000;

interface PendingPush {
  held: Held;
  commit: string;
  deploymentId: string;
  watchdog: NodeJS.Timeout;
}

/** The pushes under way, by the id the gateway gave each (FNIX_PUSH_ID). */
export class PushDeploys {
  readonly #ctx: DeployContext;
  readonly #pending = new Map<string, PendingPush>();
  /** Pushes whose request is over, so that a pre-receive that finishes late does not leave the lock held. */
  readonly #ended = new Set<string>();
  readonly #waitMs: number;
  readonly #onError: (error: unknown) => void;

  /** `onError` hears what failed where no caller waits: the activation of a push settled by its watchdog. */
  constructor(ctx: DeployContext, options: { waitMs?: number; onError?: (error: unknown) => void } = {}) {
    this.#ctx = ctx;
    this.#waitMs = options.waitMs ?? PUSH_WAIT_MS;
    this.#onError = options.onError ?? (() => {});
  }

  /**
   * pre-receive: true accepts the push. On true for main, the lock stays held until {@link postReceive}
   * or {@link pushEnded}. `gone` aborts when the hook went away: the push is refused, whatever the checks say.
   */
  async preReceive(pushId: string, updates: RefUpdate[], env: QuarantineEnv, progress: Progress, gone?: AbortSignal): Promise<boolean> {
    // Other refs go with main: git takes all of a push or none of it, so they are told of once main's fate is known.
    const others = updates.filter((update) => update.ref !== DEPLOY_REF);
    const tellOthers = (accepted: boolean) => {
      for (const update of others) {
        if (!accepted) progress(`${update.ref}: refused with main (git takes all of a push or none of it)`);
        else progress(update.new === ZERO_OID ? `${update.ref}: deleted` : `${update.ref}: kept, not deployed (only main is deployed)`);
      }
    };
    const main = updates.find((u) => u.ref === DEPLOY_REF);
    if (!main) {
      tellOthers(true);
      return true;
    }
    const accepted = await this.#checkMain(pushId, main, env, progress, gone);
    tellOthers(accepted);
    return accepted;
  }

  async #checkMain(pushId: string, main: RefUpdate, env: QuarantineEnv, progress: Progress, gone?: AbortSignal): Promise<boolean> {
    if (main.new === ZERO_OID) {
      progress('refused: main cannot be deleted, it is what fnix serves');
      return false;
    }
    const refusal = this.#ctx.refusePush();
    if (refusal) {
      progress(`refused: ${refusal}`);
      return false;
    }
    let held: Held;
    try {
      held = await this.#ctx.lock.acquire(
        `the push of ${main.new.slice(0, 12)}`,
        this.#waitMs,
        (holder) => progress(`waiting for ${holder} to finish (pushes deploy one at a time)...`),
        gone,
      );
    } catch (error) {
      progress(`refused: ${(error as Error).message}; push again later`);
      return false;
    }
    // The push is over on git's side (its hook went away, or its request ended): it cannot be accepted.
    const givenUp = () => gone?.aborted === true || this.#ended.has(pushId);
    try {
      // Another push may have moved main while this one waited: this one was made against the old main.
      const current = (await this.#ctx.repository.resolve(DEPLOY_REF)) ?? ZERO_OID;
      if (current !== main.old) {
        progress(`refused: main moved to ${current.slice(0, 12)} while this push waited; fetch, merge or rebase, and push again`);
        held.release();
        return false;
      }
      if (givenUp()) {
        held.release();
        return false;
      }
      const { record } = await checkCommit(this.#ctx, held, main.new, { env, progress, source: 'push' });
      if (record.result === 'refused') {
        progress(`refused: deployment ${record.id} did not pass its checks; the functions being served are unchanged:`);
        for (const line of (record.reason ?? '').split('\n')) progress(`  ${line}`);
        held.release();
        return false;
      }
      if (givenUp()) {
        // The push died while it was checked: git will not update main, and no post-receive will come.
        // Its commit goes with its quarantine, so the deployment cannot be activated later either.
        this.#ctx.prepared.forget(record.id);
        held.release();
        return false;
      }
      progress(`deployment ${record.id} passed its checks; it goes live when git has updated main`);
      const watchdog = setTimeout(() => {
        this.#finish(pushId, () => {}).catch((error: unknown) => this.#onError(error));
      }, PENDING_LIMIT_MS);
      watchdog.unref();
      this.#pending.set(pushId, { held, commit: main.new, deploymentId: record.id, watchdog });
      return true;
    } catch (error) {
      held.release();
      throw error;
    }
  }

  /** post-receive: git has updated the refs; main's deployment goes live. */
  async postReceive(pushId: string, progress: Progress): Promise<void> {
    await this.#finish(pushId, progress);
  }

  /**
   * The push's request is over (git http-backend exited). A push whose post-receive never ran (git
   * failed to update main, or the hook was killed) is settled here: activated if main did move to its
   * commit, dropped if not; the lock is released either way.
   */
  async pushEnded(pushId: string): Promise<void> {
    this.#ended.add(pushId);
    // Only a pre-receive still under way needs to see it; that is seconds, or a build's minutes.
    setTimeout(() => this.#ended.delete(pushId), 60 * 60_000).unref();
    await this.#finish(pushId, () => {});
  }

  async #finish(pushId: string, progress: Progress): Promise<void> {
    const pending = this.#pending.get(pushId);
    if (!pending) return;
    this.#pending.delete(pushId);
    clearTimeout(pending.watchdog);
    try {
      const main = await this.#ctx.repository.resolve(DEPLOY_REF);
      if (main !== pending.commit) {
        progress(`main is not at ${pending.commit.slice(0, 12)}: deployment ${pending.deploymentId} was not activated`);
        return;
      }
      const { deploymentId } = pending;
      const versions = this.#ctx.prepared.get(deploymentId)?.versions;
      const record = await this.#ctx.goLive({ id: deploymentId, versions }, () => activateDeployment(this.#ctx, pending.held, deploymentId), progress);
      progress(`deployment ${record.id} is live: ${record.functions.map((f) => f.name).join(', ')}`);
    } finally {
      pending.held.release();
    }
  }
}
