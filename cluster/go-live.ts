/**
 * @module
 * A push or a rollback going live across the cluster (deployments' GoLive): the closures published by
 * the builder, the record and the publication put in etcd, the `live` key swapped against the revision
 * this node serves, the deployment activated here, and then every member's acknowledgement awaited and
 * reported as it comes (git shows them as `remote:` lines). It succeeds once every current member serves
 * it, or when FNIX_CLUSTER_ACK_TIMEOUT passes, naming the nodes that do not (they keep trying).
 *
 * Nothing is half-activated: until the swap, nothing anyone serves has changed, and the swap fails when
 * etcd has no quorum or `live` moved; should the activation here fail after the swap, `live` is swapped
 * back, so that the cluster stays on the deployment it had.
 */
import type { Etcd3 } from 'etcd3';
import type { Progress } from '../deployments/context.ts';
import type { DeploymentRecord, DeploymentStore } from '../deployments/records.ts';
import { FnixError } from '../runtime/errors.ts';
import type { FunctionVersion } from '../runtime/functions/version.ts';
import { readAcks } from './acks.ts';
import { withDeadline } from './etcd.ts';
import type { Follower } from './follower.ts';
import type { ClusterKeys } from './keys.ts';
import type { LiveDeployment, LiveKey } from './live.ts';
import type { Membership } from './membership.ts';
import { closureOfVersions, readPublication, type StoredPublication, savePublication } from './publication.ts';
import type { StoreTransport } from './store/transport.ts';
import type { ClusterMember } from './view.ts';

/** What going live needs of the cluster. */
export interface GoLiveContext {
  client: Etcd3;
  keys: ClusterKeys;
  live: LiveKey;
  membership: Membership;
  follower: Follower;
  transport: StoreTransport;
  records: () => DeploymentStore;
  self: ClusterMember;
  isBuilder: () => boolean;
  ackTimeoutMs: number;
}

const ACK_POLL_MS = 200;

export async function goLiveInCluster(
  ctx: GoLiveContext,
  deployment: { id: string; versions: readonly FunctionVersion[] | undefined },
  activate: () => Promise<DeploymentRecord>,
  progress: Progress,
): Promise<DeploymentRecord> {
  const { id } = deployment;
  const begin = performance.now();
  if (!ctx.membership.lease() || ctx.membership.stale()) {
    throw new FnixError(
      'CLUSTER_UNAVAILABLE',
      `this node has not reached etcd for ${Math.round(ctx.membership.silentMs() / 1000)} s, so ${id} cannot go live; nothing was changed`,
    );
  }
  const record = await ctx.records().get(id);
  if (!record) throw new FnixError('DEPLOYMENT_NOT_FOUND', `no deployment ${JSON.stringify(id)}; GET /api/deployments lists them`);
  const before = await ctx.live.read();
  // This node must have read the live deployment the swap is made against (its repository's main is then at
  // its commit, or being fetched); serving it is not required, so that a builder a deployment failed on can
  // still push a fix or roll back. The compare-and-swap itself refuses whatever changed since.
  if (before.value && ctx.follower.state().live?.revision !== before.revision) {
    throw new FnixError(
      'DEPLOY_CONFLICT',
      `this node has not caught up with the cluster's live deployment yet (${before.value.deployment}); nothing was changed, try again in a few seconds`,
    );
  }
  const publication = await publish(ctx, id, deployment.versions, progress);
  await withDeadline('saving the deployment record', ctx.client.put(ctx.keys.deployment(id)).value(JSON.stringify(record)).exec());
  await savePublication(ctx.client, ctx.keys, id, publication);
  const members = ctx.membership.members();
  const swapped = await swapOrLearn(ctx, before.revision, {
    deployment: id,
    commit: record.commit,
    by: ctx.self.name,
    byUrl: ctx.self.url,
    at: new Date().toISOString(),
  });
  if (!swapped.swapped) {
    throw new FnixError(
      'DEPLOY_CONFLICT',
      `the live deployment changed to ${swapped.now.value?.deployment ?? 'none'} meanwhile; nothing was changed: fetch, and push (or roll back) again`,
    );
  }
  progress(`live key set to ${id} (etcd revision ${swapped.revision}); ${members.length} node(s) to serve it: ${members.map((m) => m.name).join(', ')}`);
  let activated: DeploymentRecord;
  const activationBegin = performance.now();
  try {
    activated = await activate();
  } catch (error) {
    const back = before.value ? await ctx.live.swap(swapped.revision, { ...before.value, at: new Date().toISOString() }).catch(() => undefined) : undefined;
    if (back?.swapped) ctx.follower.noteApplied(before.value!.deployment, back.revision);
    progress(
      back?.swapped
        ? `not activated on ${ctx.self.name}; the live key is back on ${before.value!.deployment}`
        : `not activated on ${ctx.self.name}, and the live key could not be set back: the nodes follow ${id}`,
    );
    throw error;
  }
  ctx.follower.noteApplied(id, swapped.revision);
  await ctx.follower.ackOwn(id, Math.round(performance.now() - activationBegin));
  await awaitAcks(ctx, id, progress, begin);
  return activated;
}

/** How long a swap whose answer was lost (etcd's leader died mid-call) is checked for, by reading the key again. */
const LEARN_MS = 15_000;

/**
 * The swap; when etcd's answer is lost (no quorum for a while, a leader killed), whether it happened is
 * learnt by reading the key again until etcd answers: the swap may have been applied all the same, and
 * then the nodes follow it, so this node must too. Throws CLUSTER_UNAVAILABLE when etcd stays silent.
 */
async function swapOrLearn(ctx: GoLiveContext, expected: string, next: LiveDeployment): ReturnType<LiveKey['swap']> {
  try {
    const result = await ctx.live.swap(expected, next);
    // etcd3 sends a call again when its answer was lost: the first attempt may have swapped, and the
    // second's compare then fails against our own value.
    if (!result.swapped && result.now.value?.by === next.by && result.now.value.at === next.at) return { swapped: true, revision: result.now.revision };
    return result;
  } catch (error) {
    const until = performance.now() + LEARN_MS;
    while (performance.now() < until) {
      const now = await ctx.live.read().catch(() => undefined);
      if (now) {
        if (now.value?.deployment === next.deployment && now.value.at === next.at) return { swapped: true, revision: now.revision };
        if (now.revision === expected) {
          throw new FnixError(
            'CLUSTER_UNAVAILABLE',
            `the live deployment could not be changed (${(error as Error).message}); nothing was changed, push again`,
            {
              cause: error,
            },
          );
        }
        return { swapped: false, now };
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    throw new FnixError(
      'CLUSTER_UNAVAILABLE',
      `etcd did not answer whether ${next.deployment} went live (${(error as Error).message}); /api/cluster tells once it does, and the nodes follow whatever it says`,
      { cause: error },
    );
  }
}

/** On the builder, with what the push built: publishes its closure. Otherwise, the publication it had. */
async function publish(ctx: GoLiveContext, id: string, versions: readonly FunctionVersion[] | undefined, progress: Progress): Promise<StoredPublication> {
  const known = await readPublication(ctx.client, ctx.keys, id);
  if (!versions || !ctx.isBuilder()) {
    if (known) {
      // A rollback on the builder: its store has the paths; published again (quick, nothing is copied twice),
      // since a builder elected after the first publication (cache mode) has none of them in its cache.
      if (ctx.isBuilder()) await ctx.transport.publish(known.closure).catch(() => {});
      return known;
    }
    throw new FnixError('CLUSTER_UNAVAILABLE', `deployment ${id} was never published to the cluster's store; only the builder can, by a push of its commit`);
  }
  const closure = closureOfVersions(versions);
  const begin = performance.now();
  const publication = await ctx.transport.publish(closure);
  progress(`store: ${closure.length} path(s) published (${ctx.transport.mode}) in ${seconds(begin)}`);
  return { ...publication, closure };
}

/** Waits for every current member's acknowledgement of `id`, reporting each; names the laggards at the bound. */
async function awaitAcks(ctx: GoLiveContext, id: string, progress: Progress, begin: number): Promise<void> {
  const told = new Map<string, string>();
  const deadline = performance.now() + ctx.ackTimeoutMs;
  for (;;) {
    const acks = await readAcks(ctx.client, ctx.keys, id).catch(() => undefined);
    const members = ctx.membership.members();
    if (acks) {
      for (const [node, ack] of acks) {
        // Told once per node and outcome: a node acknowledges again with each new lease.
        const said = ack.ok ? 'ok' : `failed: ${ack.error}`;
        if (told.get(node) === said) continue;
        told.set(node, said);
        progress(ack.ok ? `${node}: live on ${id} (${seconds(begin)} after the push)` : `${node}: not live yet: ${ack.error ?? 'failed'}; it keeps trying`);
      }
      const waiting = members.filter((m) => !acks.get(m.name)?.ok);
      if (waiting.length === 0) {
        progress(`all ${members.length} node(s) live on ${id} in ${seconds(begin)}`);
        return;
      }
      if (performance.now() > deadline) {
        progress(
          `not every node is live on ${id} after ${ctx.ackTimeoutMs / 1000} s: ${waiting
            .map((m) => `${m.name} (${acks.get(m.name)?.error ?? 'no answer'})`)
            .join(', ')}; they keep trying, and /api/cluster shows them`,
        );
        return;
      }
    } else if (performance.now() > deadline) {
      progress(`etcd did not answer while waiting for the nodes; /api/cluster shows which serve ${id}`);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, ACK_POLL_MS));
  }
}

function seconds(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
}
