/**
 * @module
 * `fnix cluster status` (the members, the builder, the live deployment and which nodes serve it, from
 * `GET /api/cluster`) and `fnix cluster haproxy-config` (the HAProxy configuration for the members,
 * made by cluster/haproxy.ts: a pure function, the one module of the server's tree the CLI imports).
 */
import type { Command } from 'commander';
import { HaproxyConfigError, haproxyConfig } from '../../cluster/haproxy.ts';
import type { ClusterStatus } from '../api-types.ts';
import type { FnixClient } from '../client.ts';
import { type CliContext, jsonOption } from '../context.ts';
import { CliError, usageError } from '../errors.ts';
import { formatAge, formatFields, formatJson, formatTable, type Palette } from '../output.ts';

/** The command-line flag of each haproxyConfig option, for a usage error. */
const FLAGS: Record<string, string> = { bind: '--bind', serverTimeout: '--server-timeout', pushTimeout: '--push-timeout' };

/** Registers `cluster status` and `cluster haproxy-config`. */
export function registerCluster(program: Command, context: CliContext): void {
  const cluster = program.command('cluster').description('a cluster of nodes: its members and builder, and the HAProxy configuration in front of them');

  jsonOption(cluster.command('status').description('the members, the builder, the live deployment and the nodes that serve it')).action(
    async (options: { json?: boolean }) => {
      const client = await context.client();
      const status = await clusterStatus(client);
      if (options.json) return context.output.out(formatJson(status));
      context.output.out(describeCluster(status, context.output.paint));
    },
  );

  cluster
    .command('haproxy-config')
    .description('print an HAProxy configuration for the current members (make it again when nodes join or leave)')
    .option('--bind <address>', "the frontend's bind line: *:80, 127.0.0.1:8080, '*:443 ssl crt /etc/haproxy/site.pem'", '*:80')
    .option('--server-timeout <duration>', "how long HAProxy waits for a node's answer: more than your longest function timeout", '60s')
    .option('--push-timeout <duration>', 'how long a push may take to answer (it builds first)', '15m')
    .action(async (options: { bind: string; serverTimeout: string; pushTimeout: string }) => {
      const client = await context.client();
      const status = await clusterStatus(client);
      let text: string;
      try {
        text = haproxyConfig({
          members: status.members,
          bind: options.bind,
          serverTimeout: options.serverTimeout,
          pushTimeout: options.pushTimeout,
          source: `${client.url}/api/cluster (node ${status.self})`,
        });
      } catch (error) {
        if (!(error instanceof HaproxyConfigError)) throw error;
        // Its message begins with the option's name: say the flag's instead.
        if (error.option) throw usageError(error.message.replace(error.option, FLAGS[error.option] ?? error.option));
        throw new CliError(error.code, error.message, { hint: 'fnix cluster status lists the members and their URLs' });
      }
      context.output.out(text);
    });
}

/** `GET /api/cluster`; a gateway that is not in a cluster is said so. */
async function clusterStatus(client: FnixClient): Promise<ClusterStatus> {
  try {
    return await client.json<ClusterStatus>('/api/cluster');
  } catch (error) {
    if (error instanceof CliError && error.code === 'ROUTE_NOT_FOUND') {
      throw new CliError('ROUTE_NOT_FOUND', `${client.url} is not a node of a cluster (it has no /api/cluster)`, {
        status: error.status,
        hint: 'a gateway joins a cluster when it starts with FNIX_CLUSTER_ETCD set (docs/cluster.md); or point the CLI at a node with --url',
      });
    }
    throw error;
  }
}

/** The cluster as people read it: a few fields, then one row per member. */
export function describeCluster(status: ClusterStatus, paint: Palette, now: number = Date.now()): string {
  const members = [...status.members].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const live = status.live;
  const serving = live ? members.filter((m) => status.acks[m.name]?.ok && status.acks[m.name]?.deployment === live.deployment).length : 0;
  const fields: [string, string][] = [
    ['asked', status.self],
    ['members', String(members.length)],
    ['builder', status.builder ?? paint.yellow('none elected')],
    [
      'live',
      live
        ? `${live.deployment} (etcd revision ${live.revision}), made live by ${live.by} ${formatAge(live.at, now)}; ${serving} of ${members.length} serve it`
        : 'no deployment',
    ],
  ];
  const rows = members.map((member) => {
    const role = member.name === status.builder ? paint.green('builder') : member.builderEligible ? 'eligible' : 'no';
    return [member.name + (member.name === status.self ? ' *' : ''), member.url, role, formatAge(member.since, now), liveCell(status, member.name, paint)];
  });
  return `${formatFields(fields, paint.bold)}\n${formatTable(['NODE', 'URL', 'BUILDER', 'MEMBER SINCE', 'LIVE'], rows, paint.bold)}`;
}

/** Whether `node` serves the live deployment: yes, failed (and why), or not yet. */
function liveCell(status: ClusterStatus, node: string, paint: Palette): string {
  if (!status.live) return '-';
  const ack = status.acks[node];
  if (!ack || ack.deployment !== status.live.deployment) return paint.yellow('not yet');
  if (ack.ok) return paint.green('yes');
  return paint.red(`failed${ack.error ? `: ${ack.error}` : ''}`);
}
