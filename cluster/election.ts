/**
 * @module
 * The builder election: nodes that may build (FNIX_BUILDER) campaign with etcd's election recipe
 * (etcd3's `election().campaign()`, which waits, unlike its try-lock); the winner is the builder until
 * its campaign's lease ends (it dies, is cut off, or shuts down), and then another candidate is elected.
 * Every node observes who leads, so that /git/ and the cache are found at the builder.
 */
import type { Campaign, Etcd3, Election, ElectionObserver } from 'etcd3';
import type { Logger } from '../runtime/log.ts';
import { withDeadline } from './etcd.ts';
import type { ClusterKeys } from './keys.ts';

export class BuilderElection {
  readonly #election: Election;
  readonly #node: string;
  readonly #log: Logger;
  #campaign: Campaign | undefined;
  #observer: ElectionObserver | undefined;
  #elected = false;
  #leader: string | undefined;
  #closed = false;
  readonly #listeners: Array<(leader: string | undefined) => void> = [];

  constructor(options: { client: Etcd3; keys: ClusterKeys; node: string; ttlSeconds: number; log: Logger }) {
    this.#election = options.client.election(options.keys.builderElection, options.ttlSeconds);
    this.#node = options.node;
    this.#log = options.log;
  }

  /** Starts observing the leader. */
  async observe(): Promise<void> {
    this.#leader = await withDeadline('reading the builder', this.#election.leader()).catch(() => undefined);
    const observer = await withDeadline('observing the builder election', this.#election.observe());
    this.#observer = observer;
    observer.on('change', (leader) => this.#setLeader(leader));
    observer.on('error', (error) => this.#log.warn('observing the builder election failed', { error: error.message }));
    this.#setLeader(observer.leader() ?? this.#leader);
  }

  /**
   * Reads the leader again (the 1 s members poll calls it): etcd3's observer stops for good when its
   * loop fails (a timeout at start, a watch cancelled by compaction), and the builder must not stay wrong.
   */
  async refresh(): Promise<void> {
    if (this.#closed || this.#elected) return;
    const leader = await withDeadline('reading the builder', this.#election.leader()).catch(() => this.#leader);
    this.#setLeader(leader);
  }

  /** Stands for builder, from now until {@link close}; a lost campaign is started again. */
  campaign(): void {
    if (this.#closed) return;
    const campaign = this.#election.campaign(this.#node);
    this.#campaign = campaign;
    campaign.on('elected', () => {
      if (this.#campaign !== campaign) return;
      this.#elected = true;
      this.#log.info('elected builder');
      this.#setLeader(this.#node);
    });
    campaign.on('error', (error) => {
      if (this.#campaign !== campaign) return;
      const was = this.#elected;
      this.#elected = false;
      this.#campaign = undefined;
      this.#log.warn(was ? 'no longer the builder' : 'the builder campaign failed', { error: error.message });
      if (was) this.#setLeader(undefined);
      setTimeout(() => this.campaign(), 1000).unref();
    });
  }

  /** Whether this node won the election and its campaign stands. */
  elected(): boolean {
    return this.#elected;
  }

  /** The builder's node name, as last observed. */
  leader(): string | undefined {
    return this.#elected ? this.#node : this.#leader;
  }

  onChange(listener: (leader: string | undefined) => void): void {
    this.#listeners.push(listener);
  }

  #setLeader(leader: string | undefined): void {
    if (leader === this.#leader) return;
    this.#leader = leader;
    for (const listener of this.#listeners) listener(leader);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const campaign = this.#campaign;
    this.#campaign = undefined;
    this.#elected = false;
    await this.#observer?.cancel().catch(() => {});
    if (campaign) await withDeadline('resigning as builder', campaign.resign(), 2000).catch(() => {});
  }
}
