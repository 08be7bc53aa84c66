/**
 * @module
 * The bare repository that pushes land in, and the git commands fnix runs on it. Every command goes
 * through execa with an argument array; none reads a work tree.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';

/** The repository's name under the git root, as clients see it: `/git/functions.git`. */
export const REPOSITORY_NAME = 'functions.git';
/** The only branch that deploys. */
export const DEPLOY_REF = 'refs/heads/main';
/** A ref value that means "no commit" (a ref created or deleted). */
export const ZERO_OID = '0000000000000000000000000000000000000000';

/** Environment variables git gives a pre-receive hook, which a command must have to see the pushed objects. */
export const QUARANTINE_VARIABLES = ['GIT_OBJECT_DIRECTORY', 'GIT_ALTERNATE_OBJECT_DIRECTORIES', 'GIT_QUARANTINE_PATH'] as const;
export type QuarantineEnv = Partial<Record<(typeof QUARANTINE_VARIABLES)[number], string>>;

/** Options of {@link Repository.open}. */
export interface RepositoryOptions {
  /** The folder holding `functions.git`. */
  root: string;
  /** receive.maxInputSize: the largest pack a push may send, in bytes. */
  maxPushBytes: number;
  /** The hook programs, installed as the repository's pre-receive and post-receive hooks. */
  hooks: { preReceive: string; postReceive: string };
}

/** The bare repository. */
export class Repository {
  readonly root: string;
  readonly gitDir: string;

  private constructor(root: string) {
    this.root = root;
    this.gitDir = join(root, REPOSITORY_NAME);
  }

  /** Creates the repository if it is missing, and (re)writes its configuration and hooks. */
  static async open(options: RepositoryOptions): Promise<Repository> {
    const repository = new Repository(options.root);
    await mkdir(options.root, { recursive: true, mode: 0o700 });
    await execa('git', ['init', '--quiet', '--bare', '--initial-branch=main', repository.gitDir]);
    const settings: Array<[string, string]> = [
      // Every object of a push is checked (a tree entry named .. or .git, a malformed commit...).
      ['receive.fsckObjects', 'true'],
      ['receive.maxInputSize', String(options.maxPushBytes)],
      ['receive.denyDeletes', 'false'], // deleting a branch other than main is fine; pre-receive guards main
      // Every request is authenticated before git http-backend sees it, pushes included.
      ['http.receivepack', 'true'],
      ['core.hooksPath', join(repository.gitDir, 'hooks')],
      ['gc.auto', '0'], // no background gc racing a push; fnix's history is small
      // fnix's own refs (each activated deployment's commit) are not offered to clients, nor writable by them.
      ['transfer.hideRefs', 'refs/fnix'],
      // A cluster's nodes fetch a deployment's commit by its id (cluster/replica.ts), whatever refs point at it
      // now. Every fetch is authenticated with the deploy token too, which can read the whole repository anyway.
      ['uploadpack.allowAnySHA1InWant', 'true'],
    ];
    for (const [key, value] of settings) await repository.git(['config', key, value]);
    const hooksDir = join(repository.gitDir, 'hooks');
    await mkdir(hooksDir, { recursive: true });
    await writeFile(join(hooksDir, 'pre-receive'), options.hooks.preReceive, { mode: 0o755 });
    await writeFile(join(hooksDir, 'post-receive'), options.hooks.postReceive, { mode: 0o755 });
    return repository;
  }

  /** Runs git on the repository; `env` may carry a hook's quarantine variables. */
  async git(
    args: string[],
    options: {
      env?: QuarantineEnv;
      extraEnv?: Record<string, string>;
      input?: string | Buffer;
      encoding?: 'buffer';
      reject?: boolean;
      timeoutMs?: number;
    } = {},
  ) {
    return execa('git', ['--git-dir', this.gitDir, ...args], {
      ...(options.timeoutMs ? { timeout: options.timeoutMs, killSignal: 'SIGKILL' as const } : {}),
      env: { ...options.extraEnv, ...options.env, ...this.#baseEnv() },
      extendEnv: true,
      input: options.input,
      encoding: options.encoding === 'buffer' ? 'buffer' : 'utf8',
      stripFinalNewline: false,
      reject: options.reject ?? true,
    });
  }

  /** Starts git on the repository with its stdout as a byte stream (for `cat-file --batch`). */
  spawnGit(args: string[], options: { env?: QuarantineEnv; input: string }) {
    return execa('git', ['--git-dir', this.gitDir, ...args], {
      env: { ...options.env, ...this.#baseEnv() },
      extendEnv: true,
      input: options.input,
      encoding: 'buffer',
      buffer: false,
      stderr: 'ignore',
    });
  }

  /** The commit a ref points at, or undefined. */
  async resolve(ref: string): Promise<string | undefined> {
    const result = await this.git(['rev-parse', '--verify', '--quiet', `${ref}^{commit}`], { reject: false });
    return result.exitCode === 0 ? String(result.stdout).trim() : undefined;
  }

  /** True when the repository has `commit` and its tree (a refused push's objects are discarded). */
  async has(commit: string): Promise<boolean> {
    const result = await this.git(['cat-file', '-e', `${commit}^{tree}`], { reject: false });
    return result.exitCode === 0;
  }

  /** No system or user configuration: the repository's own settings only. */
  #baseEnv(): Record<string, string> {
    return { GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', HOME: this.root };
  }

  /** The commit's subject line, for logs and the API. */
  async subject(commit: string, env: QuarantineEnv = {}): Promise<string> {
    const { stdout } = await this.git(['log', '-1', '--format=%s', commit], { env });
    return String(stdout).trim();
  }
}
