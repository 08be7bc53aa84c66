/**
 * @module
 * What every command gets: the client for the gateway (settings read once, from the global options and
 * the environment), the output, and the environment itself.
 */
import type { Command } from 'commander';
import { FnixClient } from './client.ts';
import type { Output } from './output.ts';
import { loadSettings, type Settings } from './settings.ts';

/** A command's surroundings. */
export interface CliContext {
  env: NodeJS.ProcessEnv;
  output: Output;
  /** The settings, from `--url`, the environment and the credentials file. */
  settings(): Promise<Settings>;
  /** A client for the gateway the settings name. */
  client(): Promise<FnixClient>;
  /** Set by a command that exits with a code of its own (a session's exit code, a refused push). */
  exitCode: number;
}

/** The context of the program `program`, whose global options it reads when a command asks. */
export function createContext(program: Command, env: NodeJS.ProcessEnv, output: Output): CliContext {
  let settings: Promise<Settings> | undefined;
  const context: CliContext = {
    env,
    output,
    exitCode: 0,
    settings: () => {
      settings ??= loadSettings({ url: program.opts<{ url?: string }>().url }, env);
      return settings;
    },
    client: async () => new FnixClient(await context.settings()),
  };
  return context;
}

/** Adds `--json` to a listing command. */
export function jsonOption(command: Command): Command {
  return command.option('--json', 'print JSON, for scripts');
}
