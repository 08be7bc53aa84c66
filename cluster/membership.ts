/**
 * @module
 * A node's membership, as Kubernetes' node leases do it: a key `members/<node>` bound to a lease the
 * node keeps alive. A node that dies, or is cut off from etcd, loses its lease after its time to live
 * and its key goes with it (and so do the acknowledgements it put under the lease). A node that gets
 * through again takes a new lease and puts its key (and its acknowledgement) back.
 *
 * The node also learns from the keepalives whether etcd hears it: with no keepalive answered within the
 * lease's time, its view is stale (/healthz says so).
 */
import type { Etcd3, Lease } from 'etcd3';
import { FnixError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import { withDeadline } from './etcd.ts';
import type { ClusterKeys } from './keys.ts';
import type { ClusterMember } from './view.ts';

/** How often the member list is read again. */
const MEMBERS_POLL_MS = 1000;

export class Membership {
  readonly #client: Etcd3;
  readonly #keys: ClusterKeys;
  readonly #self: ClusterMember;
  readonly #ttl: number;
  readonly #log: Logger;
  #lease: Lease | undefined;
  #lastHeard = 0;
  #members: ClusterMember[] = [];
  #poll: NodeJS.Timeout | undefined;
  #closed = false;
  /** Called with each new lease, once the member key is on it (acknowledgements are put again). */
  readonly #onLease: Array<(lease: Lease) => void> = [];

  constructor(options: { client: Etcd3; keys: ClusterKeys; self: ClusterMember; ttlSeconds: number; log: Logger }) {
    this.#client = options.client;
    this.#keys = options.keys;
    this.#self = options.self;
    this.#ttl = options.ttlSeconds;
    this.#log = options.log;
  }

  /** Joins: a lease, the member key on it; then keeps both, and the member list, up to date. */
  async join(): Promise<void> {
    await this.#takeLease(performance.now() + Membership.JOIN_MS);
    await this.#readMembers();
    let reading = false;
    // One read at a time: while etcd hangs, reads must not pile up behind each other.
    this.#poll = setInterval(() => {
      if (reading) return;
      reading = true;
      void this.#readMembers()
        .catch(() => {})
        .finally(() => {
          reading = false;
        });
    }, MEMBERS_POLL_MS);
    this.#poll.unref();
  }

  /** The lease acknowledgements go under (undefined until joined, or while a new one is being taken). */
  lease(): Lease | undefined {
    return this.#lease;
  }

  onLease(listener: (lease: Lease) => void): void {
    this.#onLease.push(listener);
  }

  /** True when etcd has not answered a keepalive within the lease's time to live. */
  stale(): boolean {
    return performance.now() - this.#lastHeard > this.#ttl * 1000;
  }

  /** Milliseconds since etcd last answered. */
  silentMs(): number {
    return Math.round(performance.now() - this.#lastHeard);
  }

  /** The members whose lease is alive, as last read, sorted by name. */
  members(): ClusterMember[] {
    return this.#members;
  }

  /** How long {@link join} tries before it fails with CLUSTER_UNAVAILABLE (the start is then tried again). */
  static readonly JOIN_MS = 30_000;

  async #takeLease(giveUpAt = Number.POSITIVE_INFINITY): Promise<void> {
    while (!this.#closed) {
      const lease = this.#client.lease(this.#ttl);
      try {
        await withDeadline('granting a lease', lease.grant());
        await withDeadline('putting the member key', lease.put(this.#keys.member(this.#self.name)).value(JSON.stringify(this.#self)).exec());
      } catch (error) {
        lease.release();
        if (performance.now() > giveUpAt) {
          throw new FnixError('CLUSTER_UNAVAILABLE', `this node could not join its cluster within ${Membership.JOIN_MS / 1000} s: ${(error as Error).message}`);
        }
        this.#log.warn('joining the cluster failed; trying again', { error: (error as Error).message });
        await new Promise((resolve) => setTimeout(resolve, 1000));
        continue;
      }
      this.#lastHeard = performance.now();
      lease.on('keepaliveSucceeded', () => {
        this.#lastHeard = performance.now();
      });
      lease.on('lost', (error) => {
        if (this.#closed || this.#lease !== lease) return;
        this.#lease = undefined;
        this.#log.warn('the cluster lease was lost (etcd unreachable for too long?); joining again', { error: error.message });
        void this.#takeLease();
      });
      this.#lease = lease;
      for (const listener of this.#onLease) listener(lease);
      return;
    }
  }

  async #readMembers(): Promise<void> {
    const all = await withDeadline('listing members', this.#client.getAll().prefix(this.#keys.members).strings());
    this.#lastHeard = Math.max(this.#lastHeard, performance.now());
    const members: ClusterMember[] = [];
    for (const text of Object.values(all)) {
      try {
        members.push(JSON.parse(text) as ClusterMember);
      } catch {
        // a key someone else wrote: not a member
      }
    }
    this.#members = members.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Leaves: the lease revoked, so the member key and acknowledgements go at once. */
  async leave(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#poll);
    const lease = this.#lease;
    this.#lease = undefined;
    if (lease) await withDeadline('revoking the lease', lease.revoke(), 2000).catch(() => lease.release());
  }
}
