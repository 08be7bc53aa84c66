/**
 * @module
 * The one place that spawns `podman`. Every call goes through {@link Podman.exec}, which adds fnix's
 * global options, so the host's quirks are handled in one spot rather than by editing /etc:
 * - crun fails on hosts with hybrid cgroups ("cgroups in hybrid mode not supported"); fnix uses runc
 *   when it is installed, unless told otherwise.
 */
import { access, constants } from 'node:fs/promises';
import { execa, type Options, type Result } from 'execa';

/** Options for {@link Podman}. */
export interface PodmanOptions {
  /**
   * OCI runtime name or path, passed as `--runtime`. `undefined` picks runc when it is installed,
   * else Podman's own default.
   * @default undefined
   */
  runtime?: string | undefined;
  /**
   * Kills a podman call that takes longer than this.
   * @default 60_000
   */
  timeoutMs?: number;
  /**
   * Working directory of podman, and so of the conmon processes it starts. conmon writes a file named
   * `oom` there when a container hits its memory limit, so it must not be the user's folder.
   * @default the process's working directory
   */
  cwd?: string | undefined;
}

const RUNC_PATHS = ['/usr/sbin/runc', '/usr/bin/runc', '/usr/local/sbin/runc', '/usr/local/bin/runc'];

/** A thin wrapper around the podman CLI. */
export class Podman {
  readonly globalArgs: readonly string[];
  readonly #timeoutMs: number;
  readonly #cwd: string | undefined;

  private constructor(globalArgs: string[], timeoutMs: number, cwd: string | undefined) {
    this.globalArgs = globalArgs;
    this.#timeoutMs = timeoutMs;
    this.#cwd = cwd;
  }

  /** Chooses the OCI runtime and returns a ready wrapper. */
  static async create(options: PodmanOptions = {}): Promise<Podman> {
    const runtime = options.runtime ?? (await findExecutable(RUNC_PATHS));
    return new Podman(runtime ? ['--runtime', runtime] : [], options.timeoutMs ?? 60_000, options.cwd);
  }

  /** Runs `podman <global options> <args>`; rejects with execa's error (command, stderr, exit code). */
  exec(args: readonly string[], options: Options = {}): Promise<Result> {
    return execa('podman', [...this.globalArgs, ...args], { timeout: this.#timeoutMs, cwd: this.#cwd, ...options }) as Promise<Result>;
  }
}

async function findExecutable(paths: readonly string[]): Promise<string | undefined> {
  for (const path of paths) {
    try {
      await access(path, constants.X_OK);
      return path;
    } catch {
      // try the next one
    }
  }
  return undefined;
}
