/**
 * @module
 * The etcd client a node uses, and a deadline for each call: etcd3 retries a call against another
 * member while the one it asked is down, which is what lets serving ride out a leader's death; but a
 * call must not wait for good when no member answers, so every call of fnix's has a deadline.
 */
import { Etcd3 } from 'etcd3';
import { FnixError } from '../runtime/errors.ts';
import { watchBackoff } from './state/mirror.ts';

/** How long one etcd call may take before it fails with CLUSTER_UNAVAILABLE. */
export const ETCD_CALL_MS = 5000;

/** A client of the etcd members at `endpoints`. */
export function connectEtcd(endpoints: readonly string[]): Etcd3 {
  // etcd3's own watch backoff waits up to 30 s to reconnect once etcd is back; a node's watches should not.
  // No gRPC deadline per call (tried: with one, calls failed against a healthy member and opened etcd3's circuit
  // breaker); withDeadline bounds what fnix waits for, and the polls never overlap (membership.ts, live.ts).
  return new Etcd3({ hosts: [...endpoints], dialTimeout: 2000, faultHandling: { watchBackoff: watchBackoff() } });
}

/** `call`, failed with CLUSTER_UNAVAILABLE when it takes longer than `ms`, naming `what`. */
export async function withDeadline<T>(what: string, call: Promise<T>, ms = ETCD_CALL_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new FnixError('CLUSTER_UNAVAILABLE', `etcd did not answer within ${ms / 1000} s (${what}); is a majority of its members up and reachable?`)),
      ms,
    );
  });
  try {
    return await Promise.race([call, deadline]);
  } catch (error) {
    if (error instanceof FnixError) throw error;
    throw new FnixError('CLUSTER_UNAVAILABLE', `etcd failed (${what}): ${(error as Error).message}`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
}
