/**
 * @module
 * `fnix status`: the gateway's health (/healthz: Podman, Nix, the package set, the pool, the functions)
 * and the live deployment (/api/deployments).
 */
import type { Command } from 'commander';
import type { Deployment, Health } from '../api-types.ts';
import { type CliContext, jsonOption } from '../context.ts';
import { formatAge, formatFields, formatJson } from '../output.ts';

/** Registers `status`. */
export function registerStatus(program: Command, context: CliContext): void {
  jsonOption(program.command('status').description("the gateway's health, its pool and the live deployment")).action(async (options: { json?: boolean }) => {
    const client = await context.client();
    const response = await client.fetch('/healthz');
    const text = await client.text(response);
    // 503 while shutting down still carries the health.
    if (!response.ok && response.status !== 503) throw client.errorOf(response, text);
    const health = JSON.parse(text) as Health;
    const { deployments } = await client.json<{ deployments: Deployment[] }>('/api/deployments');
    const live = deployments.find((d) => d.status === 'active') ?? null;
    if (options.json) return context.output.out(formatJson({ url: client.url, health, deployment: live }));
    context.output.out(describeStatus(client.url, health, live, context.output.paint));
  });
}

/** The status as people read it. */
export function describeStatus(url: string, health: Health, live: Deployment | null, paint: CliContext['output']['paint']): string {
  const { pool, podman } = health;
  const ready = health.functions.filter((f) => f.status === 'ready');
  const broken = health.functions.filter((f) => f.status !== 'ready');
  const fields: [string, string][] = [
    ['gateway', `${url} ${health.status === 'ok' ? paint.green('ok') : paint.yellow(health.status)}`],
    ['podman', `${podman.version} (${podman.ociRuntime}, ${podman.cgroupManager}, cgroup ${podman.cgroupVersion})`],
    ['nix', health.nix.version],
    ['packages', `${health.packageSet.kind}: ${health.packageSet.description}`],
    [
      'pool',
      `${pool.total} of ${pool.max} containers: ${pool.warm} warm, ${pool.idle} idle, ${pool.busy} busy, ${pool.serving} serving, ${pool.starting} starting; ${pool.queued} queued`,
    ],
  ];
  if (pool.lastError) fields.push(['pool error', paint.red(pool.lastError)]);
  fields.push([
    'live',
    live
      ? `${live.id}, commit ${live.commit.slice(0, 12)} ${JSON.stringify(live.subject)}, ${live.activations.length ? `live since ${formatAge(live.activations.at(-1)!)}` : ''}`.replace(
          /, $/,
          '',
        )
      : 'no deployment',
  ]);
  fields.push([
    'functions',
    `${ready.length} ready${broken.length ? `, ${paint.red(`${broken.length} broken`)} (${broken.map((f) => f.name).join(', ')})` : ''}`,
  ]);
  return formatFields(fields, paint.bold);
}
