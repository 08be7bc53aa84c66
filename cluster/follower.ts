/**
 * @module
 * A node following the live deployment: at every change of `live` (watched, and re-read every few
 * seconds), it copies the record, fetches the commit, takes the closures into its store (store/), and
 * activates the deployment here; then it acknowledges under its lease. A failure is acknowledged too,
 * with its error, so that the push names it at once, and is tried again with a backoff until it works
 * or `live` moves on. One deployment at a time; a newer one replaces a pending older one.
 */
import type { Etcd3 } from 'etcd3';
import type { Deployments } from '../deployments/deployments.ts';
import type { Logger } from '../runtime/log.ts';
import { type Ack, putAck } from './acks.ts';
import type { ClusterKeys } from './keys.ts';
import type { LiveKey, LiveState } from './live.ts';
import type { Membership } from './membership.ts';
import { readPublication } from './publication.ts';
import { copyRecords, fetchCommit, readRecord } from './replica.ts';
import type { StoreTransport } from './store/transport.ts';

/** Options of {@link Follower}. */
export interface FollowerOptions {
  client: Etcd3;
  keys: ClusterKeys;
  live: LiveKey;
  membership: Membership;
  deployments: Deployments;
  transport: StoreTransport;
  node: string;
  /** The deploy token, which the other nodes' /git/ asks for. */
  token: string;
  /** The builder's URL, when one is elected. */
  builderUrl: () => string | undefined;
  /** The other members' URLs (a commit is fetched from the first that has it). */
  peerUrls: () => string[];
  /** Told when taking a closure added store paths (the pool then replaces its generic containers). */
  onStoreChanged: () => void;
  log: Logger;
}

/** What the follower has done, for /healthz and /api/cluster. */
export interface FollowerState {
  /** The live deployment and revision last read. */
  live: LiveState | undefined;
  /** The deployment this node serves as the cluster's (undefined until the first one). */
  applied: { deployment: string; revision: string } | undefined;
  /** True once this node serves what `live` said at its first successful read. */
  synced: boolean;
  /** The last failure to follow, while it lasts. */
  error: string | undefined;
}

const BACKOFF_MS = [1000, 2000, 4000, 8000, 10_000];

export class Follower {
  readonly #o: FollowerOptions;
  #live: LiveState | undefined;
  #applied: { deployment: string; revision: string } | undefined;
  #synced = false;
  #error: string | undefined;
  #running: Promise<void> | undefined;
  #failures = 0;
  #retry: NodeJS.Timeout | undefined;
  #retryFor: string | undefined;
  #closed = false;
  readonly #waiters = new Set<() => void>();

  constructor(options: FollowerOptions) {
    this.#o = options;
  }

  state(): FollowerState {
    return { live: this.#live, applied: this.#applied, synced: this.#synced, error: this.#error };
  }

  /** Starts watching `live`; resolves once the first read was handled (applied, or failed and scheduled again). */
  async start(): Promise<void> {
    await this.#o.live.follow((state) => this.offer(state));
    const first = await this.#o.live.read().catch(() => undefined);
    if (first) {
      this.offer(first);
      await this.#running;
    }
  }

  /** Resolves once this node serves what `live` says (or `timeoutMs` passes: false). */
  async waitSynced(timeoutMs: number): Promise<boolean> {
    if (this.#synced) return true;
    return new Promise<boolean>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        resolve(this.#synced);
      };
      const timer = setTimeout(done, timeoutMs);
      this.#waiters.add(done);
    });
  }

  /** A node that made a deployment live itself (a push, a rollback) notes it, so that it is not applied again. */
  noteApplied(deployment: string, revision: string): void {
    this.#applied = { deployment, revision };
  }

  /** A state of `live`, from the watch, a re-read, or a node's own change. */
  offer(state: LiveState): void {
    if (this.#closed) return;
    if (this.#live && BigInt(state.revision) < BigInt(this.#live.revision)) return;
    this.#live = state;
    if (!state.value) {
      this.#markSynced();
      return;
    }
    if (this.#applied?.revision === state.revision || this.#applied?.deployment === state.value.deployment) {
      if (this.#applied.revision !== state.revision) {
        // Live again on what this node serves (a rollback to it): it says so again under the new revision.
        this.#applied = { deployment: state.value.deployment, revision: state.revision };
        void this.#ack(state.value.deployment, { ok: true, ms: 0, at: new Date().toISOString() });
      }
      this.#markSynced();
      return;
    }
    if (this.#retry && this.#retryFor !== state.revision) {
      // A newer deployment does not wait behind an older one's backoff.
      clearTimeout(this.#retry);
      this.#retry = undefined;
      this.#failures = 0;
    }
    this.#kick();
  }

  #kick(): void {
    if (this.#running || this.#retry) return;
    this.#running = this.#loop().finally(() => {
      this.#running = undefined;
    });
  }

  async #loop(): Promise<void> {
    while (!this.#closed) {
      const target = this.#live;
      if (!target?.value || this.#applied?.deployment === target.value.deployment) return;
      const begin = performance.now();
      try {
        await this.#apply(target);
        // `live` moved while this one waited for the lock: the newer one is applied instead.
        if (this.#live?.revision !== target.revision) continue;
        const ms = Math.round(performance.now() - begin);
        this.#applied = { deployment: target.value.deployment, revision: target.revision };
        this.#error = undefined;
        this.#failures = 0;
        this.#markSynced();
        this.#o.log.info("serving the cluster's live deployment", { deployment: target.value.deployment, ms });
        await this.#ack(target.value.deployment, { ok: true, ms, at: new Date().toISOString() });
      } catch (error) {
        this.#error = (error as Error).message;
        const wait = BACKOFF_MS[Math.min(this.#failures, BACKOFF_MS.length - 1)]!;
        this.#failures += 1;
        this.#o.log.error('the live deployment could not be served here; trying again', {
          deployment: target.value.deployment,
          error: this.#error,
          retryMs: wait,
        });
        await this.#ack(target.value.deployment, { ok: false, error: this.#error, ms: Math.round(performance.now() - begin), at: new Date().toISOString() });
        this.#retryFor = target.revision;
        this.#retry = setTimeout(() => {
          this.#retry = undefined;
          this.#kick();
        }, wait);
        this.#retry.unref();
        return;
      }
    }
  }

  async #apply(target: LiveState): Promise<void> {
    const { client, keys, deployments, transport } = this.#o;
    const live = target.value!;
    const record = await readRecord(client, keys, live.deployment);
    if (!record) throw new Error(`the live deployment ${live.deployment} has no record in etcd`);
    await copyRecords(client, keys, deployments.records);
    // Members first (the builder, then the others), the node that made it live last: it may have left.
    const urls = [...new Set([this.#o.builderUrl(), ...this.#o.peerUrls(), live.byUrl].filter((url): url is string => url !== undefined))];
    await fetchCommit(deployments.repository, live.commit, urls, this.#o.token);
    const publication = await readPublication(client, keys, live.deployment);
    if (!publication) throw new Error(`the live deployment ${live.deployment} has no publication of its store paths in etcd`);
    const taken = await transport.take(publication.closure, { builderUrl: this.#o.builderUrl(), publisherUrl: live.byUrl, publication });
    if (taken.added > 0 || taken.refreshed) {
      this.#o.onStoreChanged();
      this.#o.log.info('store paths taken', { mode: transport.mode, added: taken.added, refreshed: taken.refreshed, ms: Math.round(taken.ms) });
    }
    // The first activation after a start is made even when it is the deployment restored at start, which
    // may have held functions broken then (their store paths not visible yet).
    const force = !this.#activatedOnce;
    await deployments.activateHere(live.deployment, { force, stillWanted: () => this.#live?.revision === target.revision });
    this.#activatedOnce = true;
  }

  #activatedOnce = false;

  /** Acknowledges under the current lease; put again with each new lease (Membership.onLease). */
  async #ack(deployment: string, ack: Ack): Promise<void> {
    this.#lastAck = { deployment, ack };
    const lease = this.#o.membership.lease();
    if (!lease) return;
    await putAck(lease, this.#o.keys, deployment, this.#o.node, ack).catch((error: unknown) =>
      this.#o.log.warn('the acknowledgement could not be put; it is put again with the next lease', { deployment, error: (error as Error).message }),
    );
  }

  #lastAck: { deployment: string; ack: Ack } | undefined;

  /** Puts the last acknowledgement again (a new lease took the old one's keys with it). */
  async reack(): Promise<void> {
    if (this.#lastAck) await this.#ack(this.#lastAck.deployment, this.#lastAck.ack);
  }

  /** This node's own acknowledgement of a deployment it made live. */
  async ackOwn(deployment: string, ms: number): Promise<void> {
    await this.#ack(deployment, { ok: true, ms, at: new Date().toISOString() });
  }

  #markSynced(): void {
    if (this.#synced) return;
    this.#synced = true;
    for (const waiter of [...this.#waiters]) waiter();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    for (const waiter of [...this.#waiters]) waiter();
    // An activation under way may wait for the deploy lock for minutes: shutdown does not wait that long for it.
    await Promise.race([this.#running?.catch(() => {}), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
  }
}
