/**
 * @module
 * The environment the tests run the stock git CLI in: a fixed identity, no prompt, no user or system
 * configuration, and git run in it.
 */
import { execa } from 'execa';
export const GIT_ENV = {
  GIT_TERMINAL_PROMPT: '0',
  GIT_AUTHOR_NAME: 'dev',
  GIT_AUTHOR_EMAIL: 'dev@example.com',
  GIT_COMMITTER_NAME: 'dev',
  GIT_COMMITTER_EMAIL: 'dev@example.com',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
};

/** Runs the stock git CLI in `cwd` with {@link GIT_ENV}; resolves with its result, failed or not (`all`: stdout and stderr). */
export function git(cwd: string, ...args: string[]) {
  return execa('git', args, { cwd, env: GIT_ENV, reject: false, all: true });
}
