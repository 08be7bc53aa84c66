/**
 * @module
 * A node of a cluster, put together (docs/cluster.md): the etcd client, the membership, the builder
 * election, the follower of the live deployment, the store transport, and how a push or a rollback goes
 * live. {@link createCluster} comes first (the secrets and keys stores and the deployments need its
 * client and its GoLive); {@link Cluster.start} then joins, once deployments have started.
 */
import { join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import type { GoLive } from '../deployments/context.ts';
import type { Deployments } from '../deployments/deployments.ts';
import { FnixError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import { readAcks } from './acks.ts';
import { BuilderElection } from './election.ts';
import { connectEtcd, withDeadline } from './etcd.ts';
import { Follower } from './follower.ts';
import { goLiveInCluster } from './go-live.ts';
import { type ClusterKeys, clusterKeys } from './keys.ts';
import { LiveKey, type LiveState } from './live.ts';
import { Membership } from './membership.ts';
import { readPublication } from './publication.ts';
import type { ClusterSettings } from './settings.ts';
import { BinaryCacheStore } from './store/cache.ts';
import { SharedStore } from './store/shared.ts';
import type { StoreTransport } from './store/transport.ts';
import type { ClusterMember, ClusterView } from './view.ts';

/** Options of {@link createCluster}. */
export interface ClusterOptions {
  settings: ClusterSettings;
  stateDir: string;
  /** The deploy token, which every node shares (the other nodes' /git/ and API ask for it). */
  token: string;
  log: Logger;
}

/** What /healthz says of the cluster. */
export interface ClusterHealth {
  node: string;
  builder: string | null;
  isBuilder: boolean;
  storeMode: 'shared' | 'cache';
  /** The cluster's live deployment, as last read. */
  live: string | null;
  /** What this node serves as the cluster's. */
  serving: string | null;
  /** False until this node serves what `live` said when it started. */
  synced: boolean;
  /** True when etcd has not answered within the lease's time: this node serves the last deployment it saw. */
  stale: boolean;
  silentMs: number;
  members: number;
  error: string | null;
}

/** What GET /api/cluster answers. */
export interface ClusterStatus {
  self: string;
  builder: string | null;
  members: ClusterMember[];
  live: { deployment: string; revision: string; by: string; at: string } | null;
  /** By node: the deployment it acknowledged last, and whether it serves it. */
  acks: Record<string, { deployment: string; ok: boolean; error?: string | undefined }>;
}

/** How long a start waits to serve the live deployment before /healthz says why it does not. */
const START_SYNC_MS = 120_000;

export class Cluster implements ClusterView {
  readonly settings: ClusterSettings;
  readonly client: Etcd3;
  readonly keys: ClusterKeys;
  readonly transport: StoreTransport;
  /** cache mode: the binary cache's folder, which the builder's gateway serves at /cluster/cache/. */
  readonly cacheDir: string | undefined;
  readonly #token: string;
  readonly #log: Logger;
  readonly #member: ClusterMember;
  readonly #membership: Membership;
  readonly #election: BuilderElection;
  readonly #live: LiveKey;
  #follower: Follower | undefined;
  #deployments: Deployments | undefined;

  constructor(options: ClusterOptions) {
    const { settings, log } = options;
    this.settings = settings;
    this.#token = options.token;
    this.#log = log;
    this.client = connectEtcd(settings.etcd);
    this.keys = clusterKeys(settings.name);
    this.#member = { name: settings.node, url: settings.nodeUrl, builderEligible: settings.builderEligible, since: new Date().toISOString() };
    this.#membership = new Membership({ client: this.client, keys: this.keys, self: this.#member, ttlSeconds: settings.leaseTtlSeconds, log });
    this.#election = new BuilderElection({ client: this.client, keys: this.keys, node: settings.node, ttlSeconds: settings.leaseTtlSeconds, log });
    this.#live = new LiveKey({ client: this.client, keys: this.keys, log });
    this.cacheDir = settings.storeMode === 'cache' ? join(options.stateDir, 'cluster', 'cache') : undefined;
    this.transport =
      settings.storeMode === 'cache'
        ? new BinaryCacheStore({ cacheDir: this.cacheDir!, secretKeyFile: settings.cacheSecretKeyFile, publicKey: settings.cachePublicKey! })
        : new SharedStore({ exportDir: settings.storeExport });
  }

  get self(): string {
    return this.#member.name;
  }

  /** How pushes and rollbacks go live on this node (deployments' `goLive`). */
  readonly goLive: GoLive = (deployment, activate, progress) => {
    const follower = this.#follower;
    if (!follower || !this.#deployments) throw new FnixError('CLUSTER_UNAVAILABLE', 'this node has not joined its cluster yet; try again in a few seconds');
    const deployments = this.#deployments;
    return goLiveInCluster(
      {
        client: this.client,
        keys: this.keys,
        live: this.#live,
        membership: this.#membership,
        follower,
        transport: this.transport,
        records: () => deployments.records,
        self: this.#member,
        isBuilder: () => this.isBuilder(),
        ackTimeoutMs: this.settings.ackTimeoutMs,
      },
      deployment,
      activate,
      progress,
    );
  };

  /** Why this node takes no push now (deployments' `refusePush`). */
  readonly refusePush = (): string | undefined => {
    const builder = this.builder();
    const where = builder
      ? `push to the builder, ${builder.name} at ${builder.url}/git/functions.git (the load balancer sends /git/ there)`
      : 'no builder is elected now; push again in a few seconds';
    if (!this.settings.builderEligible) return `this node (${this.self}) does not build (FNIX_BUILDER=false): ${where}`;
    if (this.#membership.stale()) return `this node (${this.self}) cannot reach etcd, so it cannot make a deployment live: ${where}`;
    if (!this.#election.elected()) return `this node (${this.self}) is not the builder: ${where}`;
    return undefined;
  };

  /**
   * Joins: the history copied, the builder observed, the membership taken, the live deployment served
   * (waited for, up to two minutes, so that /healthz says healthy only then), and the builder campaign.
   */
  async start(options: { deployments: Deployments; onStoreChanged: () => void }): Promise<void> {
    const { deployments } = options;
    this.#deployments = deployments;
    // A builder's records (refused ones too) are the cluster's history.
    deployments.records.onSave = (record) => {
      if (!this.isBuilder()) return;
      withDeadline('saving a deployment record', this.client.put(this.keys.deployment(record.id)).value(JSON.stringify(record)).exec()).catch(
        (error: unknown) => this.#log.warn('a deployment record could not be copied to etcd', { id: record.id, error: (error as Error).message }),
      );
    };
    await this.#election
      .observe()
      .catch((error: unknown) => this.#log.warn('the builder election could not be observed yet', { error: (error as Error).message }));
    const follower = new Follower({
      client: this.client,
      keys: this.keys,
      live: this.#live,
      membership: this.#membership,
      deployments,
      transport: this.transport,
      node: this.self,
      token: this.#token,
      builderUrl: () => this.builder()?.url,
      peerUrls: () =>
        this.members()
          .filter((m) => m.name !== this.self)
          .map((m) => m.url),
      onStoreChanged: options.onStoreChanged,
      log: this.#log,
    });
    this.#follower = follower;
    this.#membership.onLease(() => void follower.reack());
    await this.#membership.join();
    await follower.start();
    if (!(await follower.waitSynced(START_SYNC_MS))) {
      this.#log.error('the live deployment is not served here yet; /healthz answers 503 until it is', { error: follower.state().error ?? 'etcd unreachable' });
    }
    // A new builder (cache mode) signs the live deployment into its own cache: nodes that join later substitute from it.
    this.#election.onChange((leader) => {
      if (leader === this.self && this.settings.storeMode === 'cache') void this.#publishLive();
    });
    if (this.settings.builderEligible) this.#election.campaign();
    let reading = false;
    this.#leaderPoll = setInterval(() => {
      if (reading) return;
      reading = true;
      void this.#election.refresh().finally(() => {
        reading = false;
      });
    }, 1000);
    this.#leaderPoll.unref();
  }

  async #publishLive(): Promise<void> {
    try {
      const live = await this.#live.read();
      if (!live.value) return;
      const publication = await readPublication(this.client, this.keys, live.value.deployment);
      if (publication) await this.transport.publish(publication.closure);
    } catch (error) {
      this.#log.warn('the live deployment could not be published by the new builder', { error: (error as Error).message });
    }
  }

  members(): ClusterMember[] {
    return this.#membership.members();
  }

  builder(): ClusterMember | undefined {
    const leader = this.#election.leader();
    if (!leader) return undefined;
    return this.members().find((m) => m.name === leader) ?? (leader === this.self ? this.#member : undefined);
  }

  isBuilder(): boolean {
    return this.#election.elected() && !this.#membership.stale();
  }

  stale(): boolean {
    return this.#membership.stale();
  }

  health(): ClusterHealth {
    const state = this.#follower?.state();
    return {
      node: this.self,
      builder: this.builder()?.name ?? null,
      isBuilder: this.isBuilder(),
      storeMode: this.settings.storeMode,
      live: state?.live?.value?.deployment ?? null,
      serving: state?.applied?.deployment ?? null,
      synced: state?.synced ?? false,
      stale: this.stale(),
      silentMs: this.#membership.silentMs(),
      members: this.members().length,
      error: state?.error ?? null,
    };
  }

  /** Whether /healthz should answer 503: not serving the live deployment yet, or stale when FNIX_CLUSTER_STALE=unhealthy. */
  unhealthy(): string | undefined {
    const state = this.#follower?.state();
    if (!state?.synced) return `not serving the cluster's live deployment yet${state?.error ? `: ${state.error}` : ''}`;
    if (this.stale() && this.settings.stale === 'unhealthy')
      return `cut off from etcd for ${Math.round(this.#membership.silentMs() / 1000)} s (FNIX_CLUSTER_STALE=unhealthy)`;
    return undefined;
  }

  async status(): Promise<ClusterStatus> {
    let live: LiveState;
    try {
      live = await this.#live.read();
    } catch (error) {
      throw new FnixError('CLUSTER_UNAVAILABLE', `etcd cannot be read from this node now: ${(error as Error).message}`);
    }
    const acks: ClusterStatus['acks'] = {};
    if (live.value) {
      for (const [node, ack] of await readAcks(this.client, this.keys, live.value.deployment))
        acks[node] = { deployment: live.value.deployment, ok: ack.ok, error: ack.error };
    }
    return {
      self: this.self,
      builder: this.builder()?.name ?? null,
      members: this.members(),
      live: live.value ? { deployment: live.value.deployment, revision: live.revision, by: live.value.by, at: live.value.at } : null,
      acks,
    };
  }

  /**
   * Leaves: the campaign resigned (another builder is elected at once), the lease revoked. The client
   * stays open for what still uses it (the secrets' and keys' mirrors) until {@link disconnect}.
   */
  async leave(): Promise<void> {
    clearInterval(this.#leaderPoll);
    // First the roles: another builder is elected at once, and pushes stop waiting for this node.
    await this.#election.close();
    await this.#membership.leave();
    await this.#live.close();
    await this.#follower?.close();
  }

  #leaderPoll: NodeJS.Timeout | undefined;

  /** Closes the etcd client, last. */
  disconnect(): void {
    this.client.close();
  }
}

/** The node's cluster, not yet joined (see {@link Cluster.start}). */
export function createCluster(options: ClusterOptions): Cluster {
  return new Cluster(options);
}
