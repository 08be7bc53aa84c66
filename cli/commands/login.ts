/**
 * @module
 * `fnix login`: takes the deploy token (--token, stdin, or a prompt that does not echo), checks it
 * against the gateway's /api, and saves it for that gateway's URL in the credentials file (mode 0600).
 */
import type { Command } from 'commander';
import { FnixClient } from '../client.ts';
import type { CliContext } from '../context.ts';
import { usageError } from '../errors.ts';
import { promptHidden, readStdin, stdinIsGiven } from '../input.ts';
import { saveToken } from '../settings.ts';

/** Registers `login`. */
export function registerLogin(program: Command, context: CliContext): void {
  program
    .command('login')
    .description("save the gateway's deploy token, once checked, for later commands")
    .option('--token <token>', 'the token (better: pipe it in, or type it when asked)')
    .addHelpText('after', '\nExamples:\n  fnix login                                   # asks\n  FNIX_URL=http://host:8080 fnix login < token-file')
    .action(async (options: { token?: string }) => {
      const settings = await context.settings();
      const raw = options.token ?? (stdinIsGiven() ? (await readStdin()).toString('utf8') : await promptHidden(`deploy token for ${settings.url}: `, 'token'));
      const token = raw.trim();
      if (!token) throw usageError('the token is empty');
      const client = new FnixClient({ ...settings, token, tokenSource: undefined });
      await client.json('/api/deployments'); // 401 UNAUTHORIZED (exit 4) when it is not the token
      await saveToken(settings.credentialsPath, settings.url, token);
      context.output.out(`logged in to ${settings.url}; the token is saved in ${settings.credentialsPath}\n`);
    });
}
