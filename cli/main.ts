/**
 * @module
 * The `fnix` command: the program, its command groups (one module each, under commands/), and the one
 * place where errors become stderr text and exit codes. bin/fnix.mjs runs the compiled copy of this file.
 *
 * Arguments are parsed by commander: the most used argument parser for Node, with no dependencies of
 * its own, generated help, subcommands and types.
 */
import { Command, CommanderError } from 'commander';
import { registerCluster } from './commands/cluster.ts';
import { registerDeploy } from './commands/deploy.ts';
import { registerFunctions } from './commands/functions.ts';
import { registerInvoke } from './commands/invoke.ts';
import { registerKeys } from './commands/keys.ts';
import { registerLogin } from './commands/login.ts';
import { registerLogs } from './commands/logs.ts';
import { registerSecrets } from './commands/secrets.ts';
import { registerSession } from './commands/session.ts';
import { registerStatus } from './commands/status.ts';
import { createContext } from './context.ts';
import { CliError, EXIT, renderError } from './errors.ts';
import { processOutput } from './output.ts';

/** The program, with every command, around `context`'s output. */
export function createProgram(env: NodeJS.ProcessEnv = process.env, version = '0.0.0') {
  const output = processOutput(env);
  const program = new Command('fnix');
  const context = createContext(program, env, output);
  program
    .description('The fnix command line: invoke, deploy, watch and run the functions of a fnix gateway.')
    .version(version, '-V, --version', "the CLI's version")
    .option('--url <url>', 'the gateway (default: FNIX_URL, else the URL of the last fnix login, else http://127.0.0.1:8080)')
    .showHelpAfterError('(fnix --help lists the commands)')
    .configureOutput({ writeOut: (text) => output.out(text), writeErr: (text) => output.err(text) })
    .addHelpText(
      'after',
      '\nEnvironment: FNIX_URL, FNIX_TOKEN (else the file fnix login writes), FNIX_KEY, NO_COLOR.\nExit codes: 0 ok, 1 an error answer, 2 usage, 3 gateway unreachable, 4 not authorised. See docs/cli.md.',
    );
  registerLogin(program, context);
  registerStatus(program, context);
  registerFunctions(program, context);
  registerInvoke(program, context);
  registerLogs(program, context);
  registerDeploy(program, context);
  registerSession(program, context);
  registerSecrets(program, context);
  registerKeys(program, context);
  registerCluster(program, context);
  // Usage mistakes throw (exit 2) rather than exit at once, in every subcommand too.
  const exitOverride = (command: Command) => {
    command.exitOverride();
    for (const sub of command.commands) exitOverride(sub);
  };
  exitOverride(program);
  return { program, context };
}

/** Runs `fnix` with `argv` (node's, the script included); resolves with the exit code. `version` is package.json's. */
export async function run(argv: string[] = process.argv, env: NodeJS.ProcessEnv = process.env, options: { version?: string } = {}): Promise<number> {
  const { program, context } = createProgram(env, options.version);
  // Output piped into a reader that went away (`fnix logs x | head`): stop, without a stack trace.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(context.exitCode);
    throw error;
  });
  try {
    await program.parseAsync(argv);
    return context.exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end here with 0; an unknown option or a missing argument with 2.
      return error.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    if ((error as NodeJS.ErrnoException).code === 'EPIPE') return context.exitCode;
    context.output.err(renderError(error, context.output.paintErr));
    return error instanceof CliError ? error.exitCode : EXIT.ERROR;
  }
}
