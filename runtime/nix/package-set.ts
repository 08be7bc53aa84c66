/**
 * @module
 * Chooses the Nix package set that function manifests' `packages` are looked up in: the one named by
 * FNIX_PACKAGES, else `<nixpkgs>` when the Nix search path has it, else the offline set shipped in
 * runtime/nix/starter. A set is carried as a Nix expression for `--arg pkgs <expression>`; runtime/nix/resolve.nix
 * imports it when it is a path and calls it with `{}` when it is a function.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { FnixError } from '../errors.ts';

/** A package set, as fnix passes it to Nix. */
export interface PackageSet {
  /**
   * Where it came from: FNIX_PACKAGES, the Nix search path's nixpkgs, the bundled starter set, or a pushed
   * repository's packages.nix (runtime/nix/repository-set.ts).
   */
  kind: 'configured' | 'nixpkgs' | 'offline' | 'repository';
  /** A Nix expression, passed as `--arg pkgs <expression>` (e.g. `<nixpkgs>` or `/srv/pkgs`). */
  expression: string;
  /** For logs and /healthz, e.g. `starter set (runtime/nix/starter, offline)` or `<nixpkgs>`. */
  description: string;
  /**
   * What names the set in GC root keys and the resolver's cache, where `expression` would not (a repository's
   * set is written to a new folder for every build: its content names it). @default expression
   */
  identity?: string;
  /** Pushed Nix code: how it is evaluated (restricted to `dir`). Absent for the sets the operator chose. */
  untrusted?: UntrustedEvaluation;
}

/** How the evaluations of pushed Nix code are confined (runtime/nix/repository-set.ts makes one). */
export interface UntrustedEvaluation {
  /** The only folder Nix may read: the set's file, a copy of resolve.nix (the file evaluated), and `<fnix>`. */
  dir: string;
  /** Nix options of every evaluation: restrict-eval, the search path, allowed-uris... */
  evalOptions: string[];
}

/** Options of {@link checkPackageSet}. */
export interface CheckPackageSetOptions {
  /** @default 120_000 */
  timeoutMs?: number;
}

/** Absolute path of the starter set: static busybox, bash and gojq, the offline set's builders (and in it). */
export const STARTER_SET_DIR = fileURLToPath(new URL('./starter', import.meta.url));

/** Absolute path of the offline package set, built from Debian's archives (a directory with default.nix). */
export const OFFLINE_SET_DIR = fileURLToPath(new URL('./offline', import.meta.url));

/** Absolute path of the helper expression that resolve.ts and {@link checkPackageSet} evaluate. */
export const RESOLVE_NIX_FILE = fileURLToPath(new URL('./resolve.nix', import.meta.url));

/** Nix's own grammar for `<name/sub/path>` search-path lookups. */
const SEARCH_PATH_PATTERN = /^<[A-Za-z0-9._+-]+(\/[A-Za-z0-9._+-]+)*>$/;

/** Absolute paths that can be written as a bare Nix path literal. */
const PATH_LITERAL_PATTERN = /^(\/[A-Za-z0-9._+-]+)+$/;

/**
 * Picks the package set.
 * - `configured` (FNIX_PACKAGES) set and of the form `<name>`: used as-is (checked for Nix's syntax only).
 * - `configured` set otherwise: a file or directory path (relative ones resolve against the working
 *   directory) that must exist; it becomes an absolute Nix path expression.
 * - unset or empty: `<nixpkgs>` when `nix-instantiate --find-file nixpkgs` finds it, else the starter set.
 * @throws FnixError PACKAGE_SET_INVALID when the configured value is malformed or names no existing path.
 */
export async function choosePackageSet(configured: string | undefined): Promise<PackageSet> {
  const value = configured?.trim();
  if (value) return configuredPackageSet(value);
  if (await hasNixpkgsOnSearchPath()) {
    return { kind: 'nixpkgs', expression: '<nixpkgs>', description: '<nixpkgs>' };
  }
  return offlinePackageSet();
}

/** The bundled offline set (runtime/nix/offline: Debian's packages as Nix packages), built without a network. */
export function offlinePackageSet(): PackageSet {
  return {
    kind: 'offline',
    expression: nixPathExpression(OFFLINE_SET_DIR),
    description: 'offline set (runtime/nix/offline, from Debian)',
  };
}

/**
 * Checks that the set evaluates to an attribute set (after importing a path and calling a function with `{}`).
 * Takes about 30 ms for the starter set; nixpkgs takes longer.
 * @throws FnixError PACKAGE_SET_INVALID with the tail of Nix's error in the message and `details.log`.
 */
export async function checkPackageSet(set: PackageSet, options: CheckPackageSetOptions = {}): Promise<void> {
  // Pushed code in read-write mode, as the resolver evaluates it: an import from a derivation then meets
  // allow-import-from-derivation's refusal, not the .drv file that read-only mode would not have written.
  const args = ['--eval', '--json', ...(set.untrusted ? ['--read-write-mode'] : []), ...evaluationArgs(set), '-A', 'setType'];
  const result = await execa('nix-instantiate', args, {
    reject: false,
    timeout: options.timeoutMs ?? 120_000,
    stdin: 'ignore',
  });
  if (set.untrusted) return checkRepositorySetResult(set, result);
  if (result.exitCode !== 0 || result.timedOut) {
    const log = tailLines(result.stderr, 20);
    const why = result.timedOut ? 'timed out' : `failed: ${firstErrorLine(result.stderr)}`;
    throw new FnixError('PACKAGE_SET_INVALID', `package set ${set.description} does not evaluate (${why}); fix FNIX_PACKAGES or the set's Nix files`, {
      details: { packageSet: set.description, log },
    });
  }
  const type: unknown = JSON.parse(result.stdout);
  if (type !== 'set') {
    throw new FnixError(
      'PACKAGE_SET_INVALID',
      `package set ${set.description} evaluates to a ${String(type)}, not an attribute set of packages; ` +
        'point FNIX_PACKAGES at a Nix file or directory whose value is an attribute set (or a function returning one)',
      { details: { packageSet: set.description } },
    );
  }
}

/**
 * The file and arguments that evaluate resolve.nix over `set`: fnix's own copy for the sets the operator chose;
 * for pushed code, the restricted options and the copy in its folder (restrict-eval reads nothing else).
 */
export function evaluationArgs(set: PackageSet): string[] {
  if (!set.untrusted) return [RESOLVE_NIX_FILE, '--arg', 'pkgs', set.expression];
  return [...set.untrusted.evalOptions, path.join(set.untrusted.dir, 'resolve.nix'), '--arg', 'pkgs', set.expression];
}

/** Said after Nix's error line when restricted evaluation refused something. */
export const RESTRICTED_HINT =
  'pushed Nix code cannot read host files or the network: it sees itself and <fnix> only, and fetches only what FNIX_ALLOWED_URIS allows';

/** Nix's words when restricted evaluation refuses a path, a URL or an import from derivation. */
const REFUSAL_PATTERN = /forbidden in restricted mode|not allowed in restricted mode|allow-import-from-derivation/;

/**
 * Nix's error line for a failed run over `set`. For pushed code: without fnix's folder in paths (they read
 * `packages.nix:3:5`), and with {@link RESTRICTED_HINT} when restricted evaluation refused something.
 */
export function nixErrorLine(set: PackageSet, stderr: string): string {
  const line = firstErrorLine(stderr);
  if (!set.untrusted) return line;
  // Nix 2.8 says where on a line of its own, a little below: `       at /…/packages.nix:2:14:`.
  const lines = stderr.split('\n');
  const index = lines.findIndex((l) => l.startsWith('error:'));
  const where = lines
    .slice(index + 1, index + 4)
    .map((l) => /^\s+at (\S+:\d+:\d+):$/.exec(l)?.[1])
    .find((at) => at !== undefined);
  const located = index >= 0 && where ? `${line} (at ${where})` : line;
  const shown = located.replaceAll(`${set.untrusted.dir}/`, '');
  return REFUSAL_PATTERN.test(shown) ? `${shown} (${RESTRICTED_HINT})` : shown;
}

/** A Nix log of a run over `set`, with fnix's folder left out of paths as in {@link nixErrorLine}. */
export function nixLog(set: PackageSet, log: string): string {
  return set.untrusted ? log.replaceAll(`${set.untrusted.dir}/`, '') : log;
}

/** checkPackageSet's verdict on a repository's packages.nix: PACKAGES_NIX_INVALID, naming the file and Nix's error. */
function checkRepositorySetResult(set: PackageSet, result: { exitCode?: number | undefined; timedOut: boolean; stdout: string; stderr: string }): void {
  const log = nixLog(set, tailLines(result.stderr, 20));
  if (result.exitCode !== 0 || result.timedOut) {
    const why = result.timedOut ? 'its evaluation timed out' : nixErrorLine(set, result.stderr);
    throw new FnixError('PACKAGES_NIX_INVALID', `${set.description}: does not evaluate: ${why}`, { details: { packageSet: set.description, log } });
  }
  const type: unknown = JSON.parse(result.stdout);
  if (type !== 'set') {
    throw new FnixError(
      'PACKAGES_NIX_INVALID',
      `${set.description}: evaluates to a ${String(type)}, not an attribute set of packages (or a function returning one)`,
      { details: { packageSet: set.description } },
    );
  }
}

/**
 * Writes an absolute filesystem path as a Nix expression: a bare path literal when Nix's grammar allows it,
 * else `(/. + "/the path")` with the string escaped, which denotes the same path value.
 */
export function nixPathExpression(absolutePath: string): string {
  if (!path.isAbsolute(absolutePath)) throw new TypeError(`not an absolute path: ${absolutePath}`);
  const normal = path.resolve(absolutePath);
  if (PATH_LITERAL_PATTERN.test(normal)) return normal;
  return `(/. + ${nixString(normal)})`;
}

/** Quotes text as a Nix double-quoted string (escaping `\`, `"`, `$` and control characters). */
export function nixString(text: string): string {
  const escaped = text.replace(/[\\"$\n\r\t]/g, (c) => {
    switch (c) {
      case '\n':
        return '\\n';
      case '\r':
        return '\\r';
      case '\t':
        return '\\t';
      default:
        return `\\${c}`;
    }
  });
  return `"${escaped}"`;
}

/** The last `count` non-empty lines of a process's output, joined with newlines. */
export function tailLines(text: string, count: number): string {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  return lines.slice(-count).join('\n');
}

/** The first line of Nix's output that starts with `error:`, without the prefix; else the last line. */
export function firstErrorLine(stderr: string): string {
  const errorLine = stderr.split('\n').find((line) => line.startsWith('error:'));
  return (errorLine?.slice('error:'.length) ?? tailLines(stderr, 1)).trim() || 'no output';
}

/** Builds the set named by FNIX_PACKAGES (see {@link choosePackageSet}). */
async function configuredPackageSet(value: string): Promise<PackageSet> {
  if (value.startsWith('<')) {
    if (!SEARCH_PATH_PATTERN.test(value)) {
      throw new FnixError(
        'PACKAGE_SET_INVALID',
        `FNIX_PACKAGES=${value} is not a valid Nix search path expression; use e.g. <nixpkgs>, or a file or directory path`,
        { details: { packageSet: value } },
      );
    }
    return { kind: 'configured', expression: value, description: value };
  }
  const absolute = path.resolve(process.cwd(), value);
  if (!(await pathExists(absolute))) {
    throw new FnixError(
      'PACKAGE_SET_INVALID',
      `FNIX_PACKAGES=${value} names ${absolute}, which does not exist; set it to a Nix file or a directory ` +
        'with a default.nix, to <nixpkgs>, or unset it to use the default',
      { details: { packageSet: value, path: absolute } },
    );
  }
  return { kind: 'configured', expression: nixPathExpression(absolute), description: absolute };
}

/** True when the Nix search path (NIX_PATH, nix.conf) resolves `nixpkgs`. */
async function hasNixpkgsOnSearchPath(): Promise<boolean> {
  const result = await execa('nix-instantiate', ['--find-file', 'nixpkgs'], {
    reject: false,
    timeout: 30_000,
    stdin: 'ignore',
  });
  return result.exitCode === 0 && !result.timedOut;
}

/** True when something exists at `absolute` (following symlinks). */
async function pathExists(absolute: string): Promise<boolean> {
  try {
    await stat(absolute);
    return true;
  } catch {
    return false;
  }
}
