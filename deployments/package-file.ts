/**
 * @module
 * Reads the package set a commit may carry, `packages.nix` at its root, straight from git's objects as tree.ts
 * reads functions/: a regular file of at most 1 MiB, or a problem that names it. Its blob id names its content, so
 * the same file is the same package set in every build that writes it out.
 */
import { MAX_REPOSITORY_SET_BYTES, REPOSITORY_SET_FILE } from '../runtime/nix/repository-set.ts';
import type { QuarantineEnv, Repository } from './repository.ts';

/** What a commit holds at packages.nix. */
export type PackageFile = { kind: 'none' } | { kind: 'file' /** The git blob id. */; oid: string; content: Buffer } | { kind: 'problem'; problem: string };

/** Reads `packages.nix` of `commit`: none, the file, or why it cannot be used. */
export async function readPackageFile(repository: Repository, commit: string, env: QuarantineEnv = {}): Promise<PackageFile> {
  const { stdout } = await repository.git(['ls-tree', '-l', '-z', '--full-tree', commit, '--', REPOSITORY_SET_FILE], { env });
  const line = String(stdout)
    .split('\0')
    .find((entry) => entry.endsWith(`\t${REPOSITORY_SET_FILE}`));
  if (line === undefined) return { kind: 'none' };
  const match = /^(\d{6}) (\w+) ([0-9a-f]{40}) +(-|\d+)\t/.exec(line);
  if (!match) throw new Error(`unexpected git ls-tree output: ${JSON.stringify(line.slice(0, 200))}`);
  const [, mode, , oid, size] = match;
  const problem = (text: string): PackageFile => ({ kind: 'problem', problem: `${REPOSITORY_SET_FILE}: ${text}` });
  if (mode === '120000') return problem('is a symbolic link; the package set must be a file of the commit itself');
  if (mode === '160000') return problem('is a submodule; the package set must be a file of the commit itself');
  if (mode !== '100644' && mode !== '100755') return problem(`has git mode ${mode}: the package set must be a file (a folder is not read)`);
  if (Number(size) > MAX_REPOSITORY_SET_BYTES) {
    return problem(`is ${size} bytes; at most ${MAX_REPOSITORY_SET_BYTES} are allowed (fetch larger sets from a URL FNIX_ALLOWED_URIS allows)`);
  }
  const blob = await repository.git(['cat-file', 'blob', oid!], { env, encoding: 'buffer' });
  return { kind: 'file', oid: oid!, content: Buffer.from(blob.stdout as unknown as Uint8Array) };
}
