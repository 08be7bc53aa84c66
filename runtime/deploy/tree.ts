/**
 * @module
 * Reads the functions/ folder of a commit straight from git's objects, never from a checkout: a
 * symbolic link is a blob holding its target, checked here and never followed, and a submodule is an
 * error. The files are then written into a fresh folder that only fnix can write to.
 */
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { execa } from 'execa';
import type { QuarantineEnv, Repository } from './git.ts';

/** The folder of a pushed commit that holds the functions. */
export const FUNCTIONS_FOLDER = 'functions';
/** The most bytes (unpacked) that a deployment's functions may hold. */
export const MAX_TREE_BYTES = 256 * 1024 * 1024;
/** The most files that a deployment's functions may hold. */
export const MAX_TREE_FILES = 20_000;

/** One file of the tree. */
interface Entry {
  mode: string;
  type: string;
  oid: string;
  size: number;
  /** The path from the repository's root: `functions/<name>/...`. */
  path: string;
}

/** What {@link readFunctionsTree} found: the function names and their files. */
export interface FunctionsTree {
  commit: string;
  /** Function folder names, sorted, those with problems included. */
  names: string[];
  entries: Entry[];
  /** Paths right inside functions/ that are not folders, and are ignored. */
  ignored: string[];
  /** What is wrong, by function name ('' for the whole tree); the files of such functions are left out. */
  problems: Map<string, string[]>;
}

/**
 * Lists functions/ of `commit` and checks it: no submodule, no link leaving its function's folder,
 * sizes. Problems are returned, by function, rather than thrown, so that every one can be reported.
 */
export async function readFunctionsTree(repository: Repository, commit: string, env: QuarantineEnv = {}): Promise<FunctionsTree> {
  const { stdout } = await repository.git(['ls-tree', '-r', '-l', '-z', '--full-tree', commit, '--', `${FUNCTIONS_FOLDER}/`], { env });
  const entries: Entry[] = [];
  for (const line of String(stdout).split('\0')) {
    if (line === '') continue;
    const match = /^(\d{6}) (\w+) ([0-9a-f]{40}) +(-|\d+)\t(.*)$/s.exec(line);
    if (!match) throw new Error(`unexpected git ls-tree output: ${JSON.stringify(line.slice(0, 200))}`);
    const [, mode, type, oid, size, path] = match;
    entries.push({ mode: mode!, type: type!, oid: oid!, size: size === '-' ? 0 : Number(size), path: path! });
  }
  const problems = new Map<string, string[]>();
  const problem = (name: string, text: string) => problems.set(name, [...(problems.get(name) ?? []), text]);
  const names = new Set<string>();
  const ignored: string[] = [];
  const kept: Entry[] = [];
  let bytes = 0;
  for (const entry of entries) {
    const parts = entry.path.split('/');
    if (parts.length < 3) {
      ignored.push(entry.path); // a file right in functions/, such as a README
      continue;
    }
    if (parts.some((part) => part === '' || part === '.' || part === '..' || part.toLowerCase() === '.git')) {
      problem(parts[1] ?? '', `${entry.path}: a path with an empty, '.', '..' or '.git' part is not allowed`);
      continue;
    }
    names.add(parts[1]!);
    if (entry.mode === '160000') {
      problem(parts[1]!, `${entry.path}: is a submodule; fnix deploys the files of the commit only, so commit the files themselves`);
    } else if (entry.mode === '120000') {
      kept.push(entry);
    } else if (entry.mode === '100644' || entry.mode === '100755') {
      kept.push(entry);
      bytes += entry.size;
    } else {
      problem(parts[1]!, `${entry.path}: has git mode ${entry.mode}, which is not a file, an executable or a link`);
    }
  }
  if (kept.length > MAX_TREE_FILES) problem('', `${FUNCTIONS_FOLDER}/ holds ${kept.length} files; at most ${MAX_TREE_FILES} are allowed`);
  if (bytes > MAX_TREE_BYTES) problem('', `${FUNCTIONS_FOLDER}/ holds ${bytes} bytes; at most ${MAX_TREE_BYTES} are allowed`);
  // Link targets are blobs: read them (they are small) and check where they lead without following them.
  const links = kept.filter((e) => e.mode === '120000');
  const targets = await readBlobs(repository, links, env);
  for (const link of links) {
    const target = targets.get(link.oid)!.toString('utf8');
    const functionDir = link.path.split('/').slice(0, 2).join('/');
    const resolved = posix.normalize(posix.join(posix.dirname(link.path), target));
    if (target.startsWith('/') || target.includes('\0') || !(resolved === functionDir || resolved.startsWith(`${functionDir}/`))) {
      problem(
        link.path.split('/')[1]!,
        `${link.path}: is a symbolic link to ${JSON.stringify(target)}, which leads outside ${functionDir}/; ` +
          `a function's folder is deployed on its own, so its links must stay inside it`,
      );
    }
  }
  const entriesKept = kept.filter((e) => !problems.has(e.path.split('/')[1]!));
  return { commit, names: [...names].sort(), entries: entriesKept, ignored, problems };
}

/** Writes the tree's files under `target` (a fresh, empty folder): `target/<name>/...` for each function. */
export async function writeFunctionsTree(repository: Repository, tree: FunctionsTree, target: string, env: QuarantineEnv = {}): Promise<void> {
  const contents = await readBlobs(repository, tree.entries, env);
  for (const entry of tree.entries) {
    const path = join(target, ...entry.path.split('/').slice(1));
    await mkdir(dirname(path), { recursive: true });
    const content = contents.get(entry.oid)!;
    // 'wx': never through anything that is already there. The folder is fnix's own and fresh, and
    // parents are made here as folders, so nothing in the tree can redirect a write.
    if (entry.mode === '120000') await symlink(content.toString('utf8'), path);
    else await writeFile(path, content, { flag: 'wx', mode: entry.mode === '100755' ? 0o755 : 0o644 });
  }
}

/** Reads blobs with one `git cat-file --batch`; returns their contents by object id. */
async function readBlobs(repository: Repository, entries: Entry[], env: QuarantineEnv): Promise<Map<string, Buffer>> {
  const oids = [...new Set(entries.map((e) => e.oid))];
  const contents = new Map<string, Buffer>();
  if (oids.length === 0) return contents;
  const child = execa('git', ['--git-dir', repository.gitDir, 'cat-file', '--batch'], {
    env: { ...env, GIT_CONFIG_NOSYSTEM: '1' },
    input: oids.join('\n') + '\n',
    encoding: 'buffer',
    buffer: false,
  });
  let pending: Buffer = Buffer.alloc(0);
  let current: { oid: string; size: number } | undefined;
  for await (const chunk of child.stdout!) {
    pending = pending.length ? Buffer.concat([pending, chunk as Buffer]) : (chunk as Buffer);
    for (;;) {
      if (!current) {
        const newline = pending.indexOf(0x0a);
        if (newline < 0) break;
        const header = pending.subarray(0, newline).toString('utf8');
        pending = pending.subarray(newline + 1);
        const match = /^([0-9a-f]{40}) (\w+) (\d+)$/.exec(header);
        if (!match) throw new Error(`git cat-file: unexpected header ${JSON.stringify(header.slice(0, 200))}`);
        current = { oid: match[1]!, size: Number(match[3]) };
      }
      if (pending.length < current.size + 1) break;
      contents.set(current.oid, Buffer.from(pending.subarray(0, current.size)));
      pending = pending.subarray(current.size + 1);
      current = undefined;
    }
  }
  await child;
  return contents;
}
