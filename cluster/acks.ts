/**
 * @module
 * Acknowledgements: `acks/<deployment>/<node>`, put by each node under its lease once it serves the
 * deployment (or with the error that stops it), and read by the push or rollback that made it live.
 */
import type { Etcd3, Lease } from 'etcd3';
import { withDeadline } from './etcd.ts';
import type { ClusterKeys } from './keys.ts';

/** What a node says of a deployment. */
export interface Ack {
  ok: boolean;
  /** Why it does not serve it (yet: it keeps trying). */
  error?: string | undefined;
  /** How long taking the store and activating took on the node. */
  ms: number;
  at: string;
}

/** Puts this node's acknowledgement of `deployment` under `lease`. */
export async function putAck(lease: Lease, keys: ClusterKeys, deployment: string, node: string, ack: Ack): Promise<void> {
  await withDeadline('acknowledging a deployment', lease.put(keys.ack(deployment, node)).value(JSON.stringify(ack)).exec());
}

/** Every node's acknowledgement of `deployment`, by node. */
export async function readAcks(client: Etcd3, keys: ClusterKeys, deployment: string): Promise<Map<string, Ack>> {
  const prefix = keys.acks(deployment);
  const all = await withDeadline('reading acknowledgements', client.getAll().prefix(prefix).strings());
  const acks = new Map<string, Ack>();
  for (const [key, text] of Object.entries(all)) {
    try {
      acks.set(key.slice(prefix.length), JSON.parse(text) as Ack);
    } catch {
      // not an acknowledgement
    }
  }
  return acks;
}
