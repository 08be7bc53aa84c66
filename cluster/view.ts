/**
 * @module
 * What the gateway and the CLI's API see of the cluster: the members, the builder, this node, and
 * whether this node's view is stale (cut off from etcd). cluster.ts keeps one up to date.
 */

/** One node, as its membership key says. */
export interface ClusterMember {
  /** FNIX_NODE_NAME. */
  name: string;
  /** FNIX_NODE_URL: where the other nodes, the load balancer and the API reach it (`http://10.0.0.2:8080`). */
  url: string;
  /** Whether it stands in the builder election (FNIX_BUILDER). */
  builderEligible: boolean;
  /** ISO time its membership began. */
  since: string;
}

/** The cluster, as this node sees it. */
export interface ClusterView {
  /** This node's name. */
  readonly self: string;
  /** The members whose lease is alive, by name; this node among them once it joined. */
  members(): ClusterMember[];
  /** The current builder, when one is elected. */
  builder(): ClusterMember | undefined;
  isBuilder(): boolean;
  /** True when this node has not heard from etcd within its lease's time (docs/cluster.md). */
  stale(): boolean;
}
