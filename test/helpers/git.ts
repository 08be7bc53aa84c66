/**
 * @module
 * The environment the tests run the stock git CLI in: a fixed identity, no prompt, no user or system
 * configuration, and git run in it.
 */
import { cp, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
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

/** {@link git}, SIGKILLed after `timeoutMs` (its result then has `timedOut: true`): for a git that talks to a server that may hang. */
export function gitWithin(timeoutMs: number, cwd: string, ...args: string[]) {
  return execa('git', args, { cwd, env: GIT_ENV, reject: false, all: true, timeout: timeoutMs, killSignal: 'SIGKILL' });
}

/** Replaces the clone's functions/ with copies of `functions` (name → fixture folder), commits and pushes to main; git push's result. */
export async function pushFixtures(repo: string, message: string, functions: Record<string, string>) {
  await rm(join(repo, 'functions'), { recursive: true, force: true });
  await mkdir(join(repo, 'functions'), { recursive: true });
  for (const [name, fixture] of Object.entries(functions)) await cp(fixture, join(repo, 'functions', name), { recursive: true });
  await git(repo, 'add', '--all');
  await git(repo, 'commit', '--quiet', '--allow-empty', '-m', message);
  return git(repo, 'push', 'origin', 'main');
}
