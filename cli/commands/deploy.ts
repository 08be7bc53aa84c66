/**
 * @module
 * `fnix deploy` (pushes the git repository's HEAD to the gateway's main, git's progress shown as it
 * comes), `fnix deployments` (the history) and `fnix rollback <ID>` (activates an earlier one).
 *
 * The token reaches git through its environment (GIT_CONFIG_COUNT/KEY/VALUE, an `http.extraHeader`),
 * never through its arguments, which any user of the machine can read in the process table, nor through
 * the repository's .git/config.
 */
import { spawn } from 'node:child_process';
import type { Command } from 'commander';
import type { Deployment } from '../api-types.ts';
import { type CliContext, jsonOption } from '../context.ts';
import { CliError, EXIT } from '../errors.ts';
import { formatAge, formatJson, formatTable, type Palette } from '../output.ts';

/** Registers `deploy`, `deployments` and `rollback`. */
export function registerDeploy(program: Command, context: CliContext): void {
  program
    .command('deploy')
    .description("push this git repository's HEAD (its functions/ folder) to the gateway, and show the build as it happens")
    .option('--dir <dir>', 'a folder inside the repository', '.')
    .option('--force', "replace the gateway's main even when HEAD does not descend from it (git push --force)")
    .action(async (options: { dir: string; force?: boolean }) => {
      const client = await context.client();
      const top = await repositoryTop(options.dir);
      if (!(await git(top, ['ls-tree', '-d', '--name-only', 'HEAD', 'functions'])).stdout.trim())
        throw new CliError('NOTHING_TO_DEPLOY', `HEAD of ${top} has no functions/ folder`, {
          exitCode: EXIT.USAGE,
          hint: 'fnix deploys the functions/ folder of the commit HEAD points at: one folder per function, each with its function.json',
        });
      const dirty = (await git(top, ['status', '--porcelain', '--', 'functions'])).stdout.trim();
      if (dirty) context.output.err(context.output.paintErr.yellow('fnix: functions/ has changes that are not committed; only the commit HEAD is deployed\n'));
      // The token and the gateway, checked before git starts: a wrong one is exit 4, an absent gateway 3.
      const before = await client.json<{ deployments: Deployment[] }>('/api/deployments');
      const remote = `${client.url}/git/functions.git`;
      const args = pushArgs(remote, { force: options.force === true, progress: process.stderr.isTTY === true });
      const pushed = await runGit(top, args, gitAuthEnv(process.env, client.settings.token ?? ''));
      if (pushed.code !== 0) {
        const behind = /non-fast-forward|fetch first|\[rejected\]/.test(pushed.stderr);
        throw new CliError('PUSH_REFUSED', behind ? "the gateway's main has commits that HEAD does not" : 'the push was refused; the lines above say why', {
          hint: behind ? `fnix deploy --force replaces it (or git pull it first, from ${remote})` : undefined,
        });
      }
      const { deployments } = await client.json<{ deployments: Deployment[] }>('/api/deployments');
      const live = deployments.find((d) => d.status === 'active');
      const known = new Set(before.deployments.map((d) => d.id));
      if (live && !known.has(live.id)) context.output.out(`deployed: ${live.id} is live: ${live.functions.map((f) => f.name).join(', ')}\n`);
      else context.output.out(`nothing new to deploy: ${live ? `${live.id} (commit ${live.commit.slice(0, 12)}) stays live` : 'no deployment is live'}\n`);
    });

  jsonOption(program.command('deployments').description('the deployment history, newest first')).action(async (options: { json?: boolean }) => {
    const answer = await (await context.client()).json<{ deployments: Deployment[] }>('/api/deployments');
    if (options.json) return context.output.out(formatJson(answer));
    context.output.out(describeDeployments(answer.deployments, context.output.paint));
  });

  jsonOption(
    program
      .command('rollback')
      .description('make an earlier deployment (or a later one again) the live one')
      .argument('<id>', 'the deployment, as fnix deployments lists it'),
  ).action(async (id: string, options: { json?: boolean }) => {
    const record = await (await context.client()).json<Deployment>(`/api/deployments/${encodeURIComponent(id)}/activate`, { method: 'POST' });
    if (options.json) return context.output.out(formatJson(record));
    context.output.out(
      `${record.id} (commit ${record.commit.slice(0, 12)} ${JSON.stringify(record.subject)}) is live: ${record.functions.map((f) => f.name).join(', ')}\n`,
    );
  });
}

/** The deployments as a table. */
export function describeDeployments(deployments: readonly Deployment[], paint: Palette): string {
  if (deployments.length === 0) return 'no deployments\n';
  const status = (d: Deployment) => (d.status === 'active' ? paint.green('active') : d.status === 'refused' ? paint.red('refused') : d.status);
  return formatTable(
    ['ID', 'STATUS', 'SOURCE', 'COMMIT', 'CREATED', 'FUNCTIONS', 'SUBJECT'],
    deployments.map((d) => [d.id, status(d), d.source, d.commit.slice(0, 12), formatAge(d.createdAt), String(d.functions.length), d.subject]),
    paint.bold,
  );
}

/**
 * git push's arguments. git shows its own progress (counting, compressing, writing objects) only when its
 * stderr is a terminal, and fnix pipes it: `--progress` asks for it when fnix's stderr is one.
 */
export function pushArgs(remote: string, options: { force: boolean; progress: boolean }): string[] {
  return ['push', ...(options.progress ? ['--progress'] : []), ...(options.force ? ['--force'] : []), remote, 'HEAD:refs/heads/main'];
}

/**
 * The environment that gives git the token: `http.extraHeader` with HTTP Basic (the token as the
 * password), and no credential helper (that could store it), appended to any GIT_CONFIG_* already set.
 */
export function gitAuthEnv(env: NodeJS.ProcessEnv, token: string): NodeJS.ProcessEnv {
  const count = Number(env['GIT_CONFIG_COUNT'] ?? 0) || 0;
  const basic = Buffer.from(`fnix:${token}`).toString('base64');
  return {
    ...env,
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_COUNT: String(count + 2),
    [`GIT_CONFIG_KEY_${count}`]: 'http.extraHeader',
    [`GIT_CONFIG_VALUE_${count}`]: `Authorization: Basic ${basic}`,
    [`GIT_CONFIG_KEY_${count + 1}`]: 'credential.helper',
    [`GIT_CONFIG_VALUE_${count + 1}`]: '',
  };
}

/** The top folder of the git repository `dir` is in; a usage error when it is in none. */
async function repositoryTop(dir: string): Promise<string> {
  const found = await git(dir, ['rev-parse', '--show-toplevel']);
  if (found.code !== 0)
    throw new CliError('NOT_A_GIT_REPOSITORY', `${dir} is not in a git repository${found.stderr ? ` (${found.stderr.trim()})` : ''}`, {
      exitCode: EXIT.USAGE,
      hint: 'run fnix deploy inside a clone of your functions repository, or pass --dir',
    });
  const top = found.stdout.trim();
  if ((await git(top, ['rev-parse', '--verify', '--quiet', 'HEAD'])).code !== 0)
    throw new CliError('NOTHING_TO_DEPLOY', `${top} has no commit yet`, { exitCode: EXIT.USAGE, hint: 'commit your functions/ folder first' });
  return top;
}

/** Runs git quietly in `cwd`; resolves with its output. */
function git(cwd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return runGit(cwd, args, process.env, false);
}

/** Runs git in `cwd`; with `live`, its stdout and stderr are also passed on as they come. */
function runGit(cwd: string, args: string[], env: NodeJS.ProcessEnv, live = true): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['-C', cwd, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk;
      if (live) process.stderr.write(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk;
      if (live) process.stderr.write(chunk);
    });
    child.on('error', (error) =>
      reject(new CliError('GIT_NOT_FOUND', `cannot run git: ${error.message}`, { hint: 'install git (apt-get install git)', cause: error })),
    );
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}
