/**
 * @module
 * `fnix key create|ls|revoke`: invoke keys for private functions (`"access": "key"`). A key is shown once,
 * when it is made; the gateway keeps only its hash.
 */
import type { Command } from 'commander';
import type { Key } from '../api-types.ts';
import { type CliContext, jsonOption } from '../context.ts';
import { formatAge, formatJson, formatTable } from '../output.ts';

/** Registers `key` and its subcommands. */
export function registerKeys(program: Command, context: CliContext): void {
  const key = program.command('key').description('invoke keys for private functions');
  jsonOption(
    key
      .command('create')
      .description('make a key; it is printed once, on stdout, and never shown again')
      .option('--function <fn>', 'the one function it may invoke (default: every function)')
      .option('--name <name>', 'a name to tell it by'),
  ).action(async (options: { function?: string; name?: string; json?: boolean }) => {
    const body = JSON.stringify({ ...(options.name ? { name: options.name } : {}), ...(options.function ? { function: options.function } : {}) });
    const created = await (await context.client()).json<Key & { key: string }>('/api/keys', {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
    });
    if (options.json) return context.output.out(formatJson(created));
    // The key alone on stdout (KEY=$(fnix key create)); what it is on stderr.
    context.output.out(`${created.key}\n`);
    context.output.err(
      `fnix: key ${created.id}${created.name ? ` (${created.name})` : ''} for ${created.function ?? 'every function'}; it is shown only now\n`,
    );
  });
  jsonOption(key.command('ls').description('the keys (never the keys themselves)')).action(async (options: { json?: boolean }) => {
    const answer = await (await context.client()).json<{ keys: Key[] }>('/api/keys');
    if (options.json) return context.output.out(formatJson(answer));
    if (answer.keys.length === 0) return context.output.out('no keys\n');
    const rows = answer.keys.map((k) => [k.id, k.name || '-', k.function ?? '(all)', formatAge(k.createdAt), k.lastUsedAt ? formatAge(k.lastUsedAt) : 'never']);
    context.output.out(formatTable(['ID', 'NAME', 'FUNCTION', 'CREATED', 'LAST USED'], rows, context.output.paint.bold));
  });
  key
    .command('revoke')
    .description('revoke a key: it stops working at once')
    .argument('<id>', 'the key id, as fnix key ls lists it')
    .action(async (id: string) => {
      await (await context.client()).json(`/api/keys/${encodeURIComponent(id)}`, { method: 'DELETE' });
      context.output.out(`key ${id} revoked\n`);
    });
}
