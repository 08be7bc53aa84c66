/**
 * @module
 * What a node keeps of the cluster's deployments so that any node can become the builder: every record
 * (copied from etcd's `deployments/` into its own history), and the repository, whose live commit it
 * fetches from the node that made it live (any node's /git/ serves fetches; only the builder takes pushes)
 * and sets main to. So the repository and the history live on every node that followed the cluster,
 * and in etcd; a new builder has both already.
 */
import type { Etcd3 } from 'etcd3';
import type { DeploymentRecord, DeploymentStore } from '../deployments/records.ts';
import { DEPLOY_REF, type Repository } from '../deployments/repository.ts';
import { FnixError } from '../runtime/errors.ts';
import { withDeadline } from './etcd.ts';
import type { ClusterKeys } from './keys.ts';

/** Copies every record in etcd that this node lacks (or holds older) into its history; returns how many. */
export async function copyRecords(client: Etcd3, keys: ClusterKeys, store: DeploymentStore): Promise<number> {
  // The newest records only (the builder removes the ones it prunes; a history longer than this is not copied).
  const all = await withDeadline(
    'reading the deployment history',
    client.getAll().prefix(keys.deployments).sort('Create', 'Descend').limit(COPIED_RECORDS).strings(),
  );
  let copied = 0;
  for (const text of Object.values(all)) {
    let record: DeploymentRecord;
    try {
      record = JSON.parse(text) as DeploymentRecord;
      if (typeof record.id !== 'string' || !/^d-[\w-]+$/.test(record.id)) continue;
    } catch {
      continue; // a key someone else wrote: not a record
    }
    const mine = await store.get(record.id);
    if (mine && JSON.stringify(mine) === JSON.stringify({ ...mine, ...record, activations: mine.activations })) continue;
    await store.saveReplica({ ...record, activations: mine?.activations ?? [] });
    copied += 1;
  }
  return copied;
}

/** The most records a node copies from etcd at once (FNIX_HISTORY's default is 50). */
const COPIED_RECORDS = 200;

/** One record from etcd; undefined when it has none. */
export async function readRecord(client: Etcd3, keys: ClusterKeys, id: string): Promise<DeploymentRecord | undefined> {
  const text = await withDeadline('reading a deployment record', client.get(keys.deployment(id)).string());
  return text === null ? undefined : (JSON.parse(text) as DeploymentRecord);
}

/**
 * Makes `commit` present in this node's repository, fetched from the first of `urls` that has it, and
 * sets main to it (so that, as builder, this node takes the next push against it).
 */
export async function fetchCommit(repository: Repository, commit: string, urls: readonly string[], token: string): Promise<void> {
  if (!(await repository.has(commit))) {
    const failures: string[] = [];
    for (const url of urls) {
      // A node that stalls mid-fetch is given up on (under 1 KB/s for 10 s), and so is a fetch over 2 minutes.
      const fetched = await repository.git(
        ['-c', 'http.lowSpeedLimit=1000', '-c', 'http.lowSpeedTime=10', 'fetch', '--no-tags', '--quiet', `${url}/git/functions.git`, commit],
        { reject: false, extraEnv: gitAuthEnv(token), timeoutMs: 120_000 },
      );
      if (fetched.exitCode === 0 && (await repository.has(commit))) break;
      failures.push(`${url}: ${String(fetched.stderr).trim().split('\n').at(-1) ?? ''}`);
    }
    if (!(await repository.has(commit))) {
      throw new FnixError('CLUSTER_UNAVAILABLE', `commit ${commit.slice(0, 12)} could not be fetched from any node: ${failures.join('; ')}`);
    }
  }
  const current = await repository.resolve(DEPLOY_REF);
  if (current !== commit) await repository.git(['update-ref', DEPLOY_REF, commit]);
}

/** git's HTTP Basic credentials for another node, through the environment (never the command line). */
function gitAuthEnv(token: string): Record<string, string> {
  return {
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'http.extraHeader',
    GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from(`fnix:${token}`).toString('base64')}`,
    GIT_TERMINAL_PROMPT: '0',
  };
}
