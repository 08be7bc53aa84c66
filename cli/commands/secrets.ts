/**
 * @module
 * `fnix secret set|ls|rm`: the gateway's secrets. A value is read from stdin or a prompt that does not
 * echo, so that it lands in no shell history; it is never printed, and no route returns it.
 */
import type { Command } from 'commander';
import type { Secret } from '../api-types.ts';
import { type CliContext, jsonOption } from '../context.ts';
import { bodyOf } from '../client.ts';
import { usageError } from '../errors.ts';
import { promptHidden, readStdin, stdinIsGiven } from '../input.ts';
import { formatAge, formatJson, formatTable } from '../output.ts';

/** Registers `secret` and its subcommands. */
export function registerSecrets(program: Command, context: CliContext): void {
  const secret = program.command('secret').description('set, list and remove the secrets functions declare');
  secret
    .command('set')
    .description('set (or rotate) a secret; the value comes from stdin or a prompt')
    .argument('<name>', 'the secret, as manifests name it (STRIPE_KEY)')
    .argument('[value]', 'the value; better left out: an argument lands in shell history and in the process table')
    .addHelpText(
      'after',
      '\nExamples:\n  fnix secret set STRIPE_KEY              # asks, without echo\n  fnix secret set STRIPE_KEY < key.txt    # the file, byte for byte',
    )
    .action(async (name: string, value: string | undefined) => {
      if (value !== undefined) context.output.err('fnix: a value given as an argument stays in your shell history; stdin or the prompt keeps it out\n');
      const body =
        value !== undefined ? Buffer.from(value) : stdinIsGiven() ? await readStdin() : Buffer.from(await promptHidden(`value of ${name}: `, 'value'));
      if (body.length === 0) throw usageError(`the value of ${name} is empty`, 'a secret holds 1 byte to 64 KiB');
      const client = await context.client();
      const answer = await client.json<{ name: string; setAt: string; restarted: string[] }>(`/api/secrets/${encodeURIComponent(name)}`, {
        method: 'PUT',
        body: bodyOf(body),
        headers: { 'content-type': 'application/octet-stream' },
      });
      context.output.out(`secret ${answer.name} set${answer.restarted.length ? `; restarted: ${answer.restarted.join(', ')}` : ''}\n`);
    });
  jsonOption(secret.command('ls').description('the secrets: names, when each was set, which functions use it (never values)')).action(
    async (options: { json?: boolean }) => {
      const answer = await (await context.client()).json<{ secrets: Secret[] }>('/api/secrets');
      if (options.json) return context.output.out(formatJson(answer));
      if (answer.secrets.length === 0) return context.output.out('no secrets\n');
      const rows = answer.secrets.map((s) => [s.name, formatAge(s.setAt), s.usedBy.join(', ') || '-']);
      context.output.out(formatTable(['NAME', 'SET', 'USED BY'], rows, context.output.paint.bold));
    },
  );
  secret
    .command('rm')
    .description('remove a secret (refused while the live deployment declares it)')
    .argument('<name>', 'the secret')
    .action(async (name: string) => {
      await (await context.client()).json(`/api/secrets/${encodeURIComponent(name)}`, { method: 'DELETE' });
      context.output.out(`secret ${name} removed\n`);
    });
}
