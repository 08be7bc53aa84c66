/**
 * @module
 * Where a cluster keeps its state in etcd: every key under one prefix, `/fnix/<cluster>/`, so that
 * several clusters can share an etcd and an operator can list one with `etcdctl get --prefix`.
 */

/** The cluster's keys, under `prefix` (`/fnix/<FNIX_CLUSTER_NAME>/`). */
export function clusterKeys(cluster: string) {
  const prefix = `/fnix/${cluster}/`;
  return {
    prefix,
    /** `members/<node>`: a node's membership, bound to its lease (gone when the node is). */
    members: `${prefix}members/`,
    member: (node: string) => `${prefix}members/${node}`,
    /** The builder election (etcd3's election keys live under it). */
    builderElection: `${prefix}builder`,
    /** The live deployment: one key, changed by compare-and-swap on its revision. */
    live: `${prefix}live`,
    /** `deployments/<id>`: every deployment record, the cluster's history. */
    deployments: `${prefix}deployments/`,
    deployment: (id: string) => `${prefix}deployments/${id}`,
    /** `registrations/<id>`: the Nix database rows of a deployment's closure (shared store mode). */
    registration: (id: string) => `${prefix}registrations/${id}`,
    /** `acks/<id>/<node>`: a node serves deployment `id`; bound to the node's lease. */
    acks: (id: string) => `${prefix}acks/${id}/`,
    ack: (id: string, node: string) => `${prefix}acks/${id}/${node}`,
    /** `secrets/<name>`: a secret's value, encrypted with the cluster's FNIX_SECRETS_KEY. */
    secrets: `${prefix}secrets/`,
    secret: (name: string) => `${prefix}secrets/${name}`,
    /** `keys/<id>`: an invoke key's record (its secret only as a SHA-256). */
    keys: `${prefix}keys/`,
    key: (id: string) => `${prefix}keys/${id}`,
  };
}

export type ClusterKeys = ReturnType<typeof clusterKeys>;
