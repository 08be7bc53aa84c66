/**
 * @module
 * The package set a pushed repository may carry: `packages.nix` at its root, evaluated as hostile input. fnix
 * writes it into a folder of its own, beside a copy of resolve.nix and `<fnix>`, and every evaluation of it is
 * restricted to that folder (restrict-eval): no other file of the host, no search path entry but `<fnix>`, no
 * import from derivation, and no URL but those FNIX_ALLOWED_URIS lists. Its builds are checked and sandboxed
 * (sandbox.ts).
 *
 * `<fnix>` is the offline set, seen through a description of its derivations (describe-set.nix, evaluated by fnix
 * itself, once) from which offline-view.nix makes the same derivations again: a pushed set builds on the offline
 * set's packages, with their very store paths, without reading any file the offline set is made from.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, realpath, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { FnixError } from '../errors.ts';
import { firstErrorLine, nixPathExpression, RESOLVE_NIX_FILE, offlinePackageSet, type PackageSet } from './package-set.ts';
import { parseListedUrl } from './url-list.ts';

/** The file at a repository's root whose value is the package set of its functions. */
export const REPOSITORY_SET_FILE = 'packages.nix';

/** The search path name under which a pushed set finds the offline set: `import <fnix> { }`. */
export const OFFLINE_SEARCH_PATH_NAME = 'fnix';

/** The largest packages.nix accepted. */
export const MAX_REPOSITORY_SET_BYTES = 1024 * 1024;

/** The trusted helper that describes the offline set's derivations. */
const DESCRIBE_SET_FILE = fileURLToPath(new URL('./describe-set.nix', import.meta.url));

/** What `<fnix>` is made of, copied into every restricted evaluation's folder. */
const OFFLINE_VIEW_FILE = fileURLToPath(new URL('./offline-view.nix', import.meta.url));

/** The offline set, described (see describe-set.nix). */
export interface OfflineDescription {
  /** The description as JSON, written beside offline-view.nix as set.json. */
  json: string;
  /** Names this description (sha256 of the JSON, 32 hex digits): part of a repository set's identity. */
  hash: string;
  /** Every .drv file it names, which must stay in the store for the view to be used. */
  drvPaths: string[];
}

/** Options of {@link OfflineView}. */
export interface OfflineViewOptions {
  /** The set pushed code sees as `<fnix>`. @default offlinePackageSet(): the offline set */
  offlineSet?: PackageSet;
  /** Time limit of the describing evaluation. @default 120_000 */
  timeoutMs?: number;
}

/**
 * `<fnix>`: the offline set's description, made once with a trusted evaluation and kept; made again when a
 * garbage collection has removed one of the .drv files it names, or when the last attempt failed.
 */
export class OfflineView {
  readonly offlineSet: PackageSet;
  readonly #timeoutMs: number;
  #described: Promise<OfflineDescription> | undefined;

  constructor(options: OfflineViewOptions = {}) {
    this.offlineSet = options.offlineSet ?? offlinePackageSet();
    this.#timeoutMs = options.timeoutMs ?? 120_000;
  }

  /**
   * The description, from the memo when its .drv files are all still in the store.
   * @throws FnixError PACKAGE_SET_INVALID when the offline set does not evaluate.
   */
  async describe(): Promise<OfflineDescription> {
    const memo = this.#described;
    if (memo) {
      const described = await memo.catch(() => undefined);
      if (described?.drvPaths.every((drv) => existsSync(drv))) return described;
      if (this.#described === memo) this.#described = undefined;
    }
    this.#described ??= this.#describeNow();
    return this.#described;
  }

  /** Runs describe-set.nix on the offline set, writing its .drv files to the store. */
  async #describeNow(): Promise<OfflineDescription> {
    const args = ['--eval', '--strict', '--json', '--read-write-mode', DESCRIBE_SET_FILE, '--arg', 'set', this.offlineSet.expression];
    const result = await execa('nix-instantiate', args, { reject: false, timeout: this.#timeoutMs, stdin: 'ignore' });
    if (result.exitCode !== 0 || result.timedOut) {
      const why = result.timedOut ? 'timed out' : firstErrorLine(result.stderr);
      throw new FnixError('PACKAGE_SET_INVALID', `the ${this.offlineSet.description}, which pushed sets see as <fnix>, does not evaluate: ${why}`, {
        details: { packageSet: this.offlineSet.description },
      });
    }
    const json = result.stdout.trim();
    const drvPaths = [...json.matchAll(/"drvPath":"(\/nix\/store\/[^"]+\.drv)"/g)].map((m) => m[1]!);
    return { json, hash: createHash('sha256').update(json).digest('hex').slice(0, 32), drvPaths };
  }
}

/** What {@link prepareRepositorySet} makes a package set of. */
export interface RepositorySetSource {
  /** A fresh folder of fnix's own holding the commit's packages.nix, and nothing else. */
  dir: string;
  /** What names the file's content: its git blob id. The same content is the same set, wherever it is written. */
  fileId: string;
  offline: OfflineDescription;
  /** FNIX_ALLOWED_URIS: URL prefixes that evaluations may fetch. */
  allowedUris: readonly string[];
}

/**
 * Completes the folder of a repository's packages.nix (a copy of resolve.nix, and `<fnix>` as fnix/default.nix
 * with its set.json), and returns the package set, restricted to that folder.
 */
export async function prepareRepositorySet(source: RepositorySetSource): Promise<PackageSet> {
  const { offline } = source;
  // Nix checks the canonical path against the search path: a state folder reached through a symbolic link
  // would otherwise make every read of the folder "forbidden in restricted mode".
  const dir = await realpath(source.dir);
  const viewDir = path.join(dir, OFFLINE_SEARCH_PATH_NAME);
  await mkdir(viewDir);
  await copyFile(OFFLINE_VIEW_FILE, path.join(viewDir, 'default.nix'));
  await writeFile(path.join(viewDir, 'set.json'), offline.json);
  await copyFile(RESOLVE_NIX_FILE, path.join(dir, 'resolve.nix'));
  return {
    kind: 'repository',
    expression: nixPathExpression(path.join(dir, REPOSITORY_SET_FILE)),
    description: REPOSITORY_SET_FILE,
    identity: `${REPOSITORY_SET_FILE} ${source.fileId} <${OFFLINE_SEARCH_PATH_NAME}> ${offline.hash}`,
    untrusted: { dir, evalOptions: restrictedEvalOptions(dir, source.allowedUris) },
  };
}

/**
 * The Nix options of every evaluation of pushed code. restrict-eval lets Nix read only the search path's entries
 * (so nix-path is emptied: NIX_PATH and nix.conf's entries would be readable too), and fetch only allowed-uris.
 */
export function restrictedEvalOptions(dir: string, allowedUris: readonly string[]): string[] {
  const option = (name: string, value: string) => ['--option', name, value];
  return [
    ...option('restrict-eval', 'true'),
    ...option('pure-eval', 'false'),
    ...option('allow-import-from-derivation', 'false'),
    ...option('allow-unsafe-native-code-during-evaluation', 'false'),
    ...option('nix-path', ''),
    ...option('allowed-uris', allowedUris.join(' ')),
    '-I',
    `${OFFLINE_SEARCH_PATH_NAME}=${path.join(dir, OFFLINE_SEARCH_PATH_NAME)}`,
    '-I',
    `fnix-repository=${dir}`,
  ];
}

/**
 * Why `uri` is not an FNIX_ALLOWED_URIS entry fnix accepts, or undefined when it is: an `http://` or `https://`
 * URL with a host (a prefix: Nix allows what starts with it, at a `/`), without credentials or spaces. `file:`
 * is refused: it would let pushed code read the host's files.
 */
export function invalidAllowedUriReason(uri: string): string | undefined {
  const parsed = parseListedUrl(uri);
  if (typeof parsed === 'string') return parsed;
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return 'only http:// and https:// URLs may be allowed (file: would expose the host)';
  if (!parsed.hostname) return 'it names no host';
  if (parsed.username || parsed.password) return 'it holds credentials';
  return undefined;
}
