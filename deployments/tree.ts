/**
 * @module
 * Reads the functions/ folder of a commit straight from git's objects, never from a checkout: a
 * symbolic link is a blob holding its target, and a submodule is an error. The files are then written
 * into a fresh folder that only fnix can write to, streamed blob by blob; after that, every link is
 * resolved as the kernel would resolve it (chains of links included), and one that leads outside its
 * function's folder is refused before anything reads through it.
 */
import { chmod, copyFile, mkdir, open, realpath, symlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { dirname, join, posix, sep } from 'node:path';
import { describeFsError } from '../runtime/fs-errors.ts';
import type { QuarantineEnv, Repository } from './repository.ts';

/** The folder of a pushed commit that holds the functions. */
export const FUNCTIONS_FOLDER = 'functions';
/** The most bytes (unpacked) that a deployment's functions may hold. */
export const MAX_TREE_BYTES = 256 * 1024 * 1024;
/** The most files that a deployment's functions may hold. */
export const MAX_TREE_FILES = 20_000;
/** The longest link target accepted: symlink(2) refuses one of PATH_MAX (4096) bytes. */
const MAX_LINK_BYTES = 4095;
/** The longest file or folder name: what Linux file systems take (NAME_MAX). */
export const MAX_NAME_BYTES = 255;
/** The longest path of a file inside functions/, so that every copy of it (staging, builds) stays well within PATH_MAX. */
export const MAX_PATH_BYTES = 1024;
/** Ignored paths listed one by one in the progress; the rest are counted. */
export const IGNORED_LISTED = 10;

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
  /** The target of each symbolic link, by the link's object id. */
  linkTargets: Map<string, string>;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Lists functions/ of `commit` and checks what can be checked without writing it: no submodule, no
 * link target that is absolute or leaves its function's folder as text, sizes, names. Problems are
 * returned by function, rather than thrown, so that every one can be reported.
 */
export async function readFunctionsTree(repository: Repository, commit: string, env: QuarantineEnv = {}): Promise<FunctionsTree> {
  const { stdout } = await repository.git(['ls-tree', '-r', '-l', '-z', '--full-tree', commit, '--', `${FUNCTIONS_FOLDER}/`], {
    env,
    encoding: 'buffer',
  });
  const problems = new Map<string, string[]>();
  const problem = (name: string, text: string) => problems.set(name, [...(problems.get(name) ?? []), text]);
  const names = new Set<string>();
  const ignored: string[] = [];
  const kept: Entry[] = [];
  let bytes = 0;
  for (const raw of splitNul(stdout as unknown as Buffer)) {
    let line: string;
    try {
      line = utf8.decode(raw);
    } catch {
      problem('', `${JSON.stringify(raw.toString('latin1').split('\t').slice(1).join('\t'))}: a file name that is not UTF-8 is not allowed`);
      continue;
    }
    const match = /^(\d{6}) (\w+) ([0-9a-f]{40}) +(-|\d+)\t(.*)$/s.exec(line);
    if (!match) throw new Error(`unexpected git ls-tree output: ${JSON.stringify(line.slice(0, 200))}`);
    const [, mode, type, oid, size, path] = match;
    const entry: Entry = { mode: mode!, type: type!, oid: oid!, size: size === '-' ? 0 : Number(size), path: path! };
    const parts = entry.path.split('/');
    if (parts.length < 3) {
      ignored.push(entry.path); // a file right in functions/, such as a README
      continue;
    }
    const name = parts[1]!;
    names.add(name);
    const longName = parts.find((part) => Buffer.byteLength(part) > MAX_NAME_BYTES);
    if (parts.some((part) => part === '' || part === '.' || part === '..' || part.toLowerCase() === '.git' || part.includes('\0'))) {
      problem(name, `${entry.path}: a path with an empty, '.', '..' or '.git' part is not allowed`);
    } else if (longName !== undefined) {
      problem(name, `${abbreviate(entry.path)}: has a name of ${Buffer.byteLength(longName)} bytes; file systems take at most ${MAX_NAME_BYTES}, so rename it`);
    } else if (Buffer.byteLength(entry.path) > MAX_PATH_BYTES) {
      problem(name, `${abbreviate(entry.path)}: its path is ${Buffer.byteLength(entry.path)} bytes long; at most ${MAX_PATH_BYTES} are allowed`);
    } else if (entry.mode === '160000') {
      problem(name, `${entry.path}: is a submodule; fnix deploys the files of the commit only, so commit the files themselves`);
    } else if (entry.mode === '120000') {
      if (entry.size === 0 || entry.size > MAX_LINK_BYTES) problem(name, `${entry.path}: a symbolic link's target must be 1 to ${MAX_LINK_BYTES} bytes`);
      else kept.push(entry);
    } else if (entry.mode === '100644' || entry.mode === '100755') {
      kept.push(entry);
      bytes += entry.size;
    } else {
      problem(name, `${entry.path}: has git mode ${entry.mode}, which is not a file, an executable or a link`);
    }
  }
  if (kept.length + ignored.length > MAX_TREE_FILES)
    problem('', `${FUNCTIONS_FOLDER}/ holds ${kept.length + ignored.length} files; at most ${MAX_TREE_FILES} are allowed`);
  if (bytes > MAX_TREE_BYTES) problem('', `${FUNCTIONS_FOLDER}/ holds ${bytes} bytes; at most ${MAX_TREE_BYTES} are allowed`);
  const linkTargets = new Map<string, string>();
  if (!problems.has('')) {
    // Link targets are small blobs: read them, and refuse those that leave their folder as written.
    // (A chain of links can still leave it; checkLinks() catches that once the tree is written.)
    const links = kept.filter((e) => e.mode === '120000');
    const targets = new Map<string, Buffer>();
    await streamBlobs(repository, links, env, async (entry) => {
      const chunks: Buffer[] = [];
      return { write: async (chunk) => void chunks.push(Buffer.from(chunk)), close: async () => void targets.set(entry.oid, Buffer.concat(chunks)) };
    });
    for (const link of links) {
      const name = link.path.split('/')[1]!;
      let target: string;
      try {
        target = utf8.decode(targets.get(link.oid)!);
        linkTargets.set(link.oid, target);
      } catch {
        problem(name, `${link.path}: a symbolic link's target must be UTF-8`);
        continue;
      }
      const functionDir = `${FUNCTIONS_FOLDER}/${name}`;
      const resolved = posix.normalize(posix.join(posix.dirname(link.path), target));
      if (target.startsWith('/') || target.includes('\0') || !(resolved === functionDir || resolved.startsWith(`${functionDir}/`))) {
        problem(name, leavesFolder(link.path, target, functionDir));
      }
    }
  }
  const entries = kept.filter((e) => !problems.has(e.path.split('/')[1]!));
  return { commit, names: [...names].sort(), entries, ignored, problems, linkTargets };
}

/**
 * Writes the tree's files under `target` (a fresh, empty folder, `target/<name>/...` for each function),
 * then resolves every link it wrote: the names of functions with a link that leads outside its folder
 * are returned with the problem, and nothing may read their files.
 */
export async function writeFunctionsTree(repository: Repository, tree: FunctionsTree, target: string, env: QuarantineEnv = {}): Promise<Map<string, string[]>> {
  const pathOf = (entry: Entry) => join(target, ...entry.path.split('/').slice(1));
  // Parents are made here, as folders, and every file is created new ('wx'): the folder is fnix's own
  // and fresh, so nothing in the tree can redirect a write. Any write that fails (a full disk, say) is a
  // TreeWriteError naming the file, which refuses the push like any other problem.
  const firstPath = new Map<string, string>();
  const copies: Array<[Entry, string]> = [];
  const files = tree.entries.filter((e) => e.mode !== '120000');
  for (const entry of files) {
    await writing(entry, () => mkdir(dirname(pathOf(entry)), { recursive: true }));
    if (firstPath.has(entry.oid)) copies.push([entry, firstPath.get(entry.oid)!]);
    else firstPath.set(entry.oid, pathOf(entry));
  }
  const unique = files.filter((e) => firstPath.get(e.oid) === pathOf(e));
  await streamBlobs(repository, unique, env, async (entry) => {
    const file: FileHandle = await writing(entry, () => open(pathOf(entry), 'wx', entry.mode === '100755' ? 0o755 : 0o644));
    return {
      write: (chunk) => writing(entry, () => writeWhole(file, chunk)),
      close: () => writing(entry, () => file.close()),
    };
  });
  for (const [entry, from] of copies) {
    await writing(entry, async () => {
      await copyFile(from, pathOf(entry), 1 /* COPYFILE_EXCL */);
      await chmod(pathOf(entry), entry.mode === '100755' ? 0o755 : 0o644);
    });
  }
  const links = tree.entries.filter((e) => e.mode === '120000');
  for (const link of links) {
    await writing(link, async () => {
      await mkdir(dirname(pathOf(link)), { recursive: true });
      await symlink(tree.linkTargets.get(link.oid)!, pathOf(link));
    });
  }
  return checkLinks(
    links.map((l) => l.path),
    target,
  );
}

/** Resolves each written link (the kernel follows chains); a link that leads outside its function's folder is a problem. */
async function checkLinks(paths: string[], target: string): Promise<Map<string, string[]>> {
  const problems = new Map<string, string[]>();
  const root = await realpath(target);
  for (const path of paths) {
    const name = path.split('/')[1]!;
    const folder = join(root, name);
    let resolved: string | undefined;
    try {
      resolved = await realpath(join(root, ...path.split('/').slice(1)));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') continue; // a dangling link inside the folder harms no one
      problems.set(name, [...(problems.get(name) ?? []), `${path}: a symbolic link that cannot be resolved (${code})`]);
      continue;
    }
    if (resolved !== folder && !resolved.startsWith(folder + sep)) {
      problems.set(name, [...(problems.get(name) ?? []), leavesFolder(path, '(through other links)', `${FUNCTIONS_FOLDER}/${name}`)]);
    }
  }
  return problems;
}

function leavesFolder(path: string, target: string, functionDir: string): string {
  return `${path}: is a symbolic link to ${JSON.stringify(target)}, which leads outside ${functionDir}/; a function's folder is deployed on its own, so its links must stay inside it`;
}

/** Where one blob's bytes go. */
interface BlobSink {
  write(chunk: Buffer): Promise<void>;
  close(): Promise<void>;
}

/**
 * Streams blobs out of one `git cat-file --batch`, each to the sink `open` gives for it, chunk by chunk
 * as they arrive: nothing is held whole in memory, and no buffer is copied more than once. When a sink
 * fails (a full disk) or git does, git is stopped and waited for before the error goes on, so that
 * neither its process nor its promise is left behind.
 */
async function streamBlobs(repository: Repository, entries: Entry[], env: QuarantineEnv, openSink: (entry: Entry) => Promise<BlobSink>): Promise<void> {
  if (entries.length === 0) return;
  const byOid = new Map(entries.map((e) => [e.oid, e]));
  const child = repository.spawnGit(['cat-file', '--batch'], { env, input: `${[...byOid.keys()].join('\n')}\n` });
  // Settles however git ends (killed below, or failing by itself); read once its output is consumed.
  const exit: Promise<unknown> = child.then(
    () => undefined,
    (error: unknown) => error ?? new Error('git cat-file failed'),
  );
  let header = '';
  let current: { sink: BlobSink; remaining: number } | undefined;
  let skipNewline = false;
  let written = 0;
  // A blob is whole: its sink is closed, and git's newline after it is skipped.
  const finishBlob = async () => {
    const done = current!;
    current = undefined;
    await done.sink.close();
    written += 1;
    skipNewline = true;
  };
  try {
    for await (const data of child.stdout!) {
      const chunk = data as Buffer;
      let offset = 0;
      while (offset < chunk.length) {
        if (skipNewline) {
          offset += 1; // the newline after each blob
          skipNewline = false;
        } else if (current) {
          const take = Math.min(current.remaining, chunk.length - offset);
          await current.sink.write(chunk.subarray(offset, offset + take));
          current.remaining -= take;
          offset += take;
          if (current.remaining === 0) await finishBlob();
        } else {
          const newline = chunk.indexOf(0x0a, offset);
          header += chunk.subarray(offset, newline < 0 ? chunk.length : newline).toString('latin1');
          if (newline < 0) break;
          offset = newline + 1;
          const line = header;
          header = '';
          const match = /^([0-9a-f]{40}) blob (\d+)$/.exec(line);
          const entry = match ? byOid.get(match[1]!) : undefined;
          if (!match || !entry) throw new Error(`git cat-file: unexpected header ${JSON.stringify(line.slice(0, 200))}`);
          current = { sink: await openSink(entry), remaining: Number(match[2]) };
          if (current.remaining === 0) await finishBlob();
        }
      }
    }
    const failure = await exit;
    if (failure) throw new Error(`git cat-file --batch failed: ${(failure as Error).message}`, { cause: failure });
    if (written !== byOid.size) throw new Error(`git cat-file --batch gave ${written} of ${byOid.size} blobs`);
  } catch (error) {
    child.kill();
    await exit;
    await current?.sink.close().catch(() => {});
    throw error;
  }
}

/** Writes all of `chunk` (a write may take only part of it, as when the disk fills). */
async function writeWhole(file: FileHandle, chunk: Buffer): Promise<void> {
  for (let offset = 0; offset < chunk.length; ) {
    const { bytesWritten } = await file.write(chunk, offset);
    offset += bytesWritten;
  }
}

/** A file of a pushed tree that could not be written, named as the pusher knows it, with the cause in words. */
export class TreeWriteError extends Error {
  override name = 'TreeWriteError';
  /** `functions/<name>/...` */
  readonly path: string;

  constructor(path: string, cause: unknown) {
    super(`${abbreviate(path)}: could not be written: ${describeFsError(cause)}`, { cause });
    this.path = path;
  }
}

/** Runs one write step for `entry`, turning its failure into a {@link TreeWriteError}. */
async function writing<T>(entry: Entry, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    throw error instanceof TreeWriteError ? error : new TreeWriteError(entry.path, error);
  }
}

/** A path as messages show it: long names cut, with their length said. */
function abbreviate(path: string): string {
  return path
    .split('/')
    .map((part) => (part.length > 64 ? `${part.slice(0, 40)}…(${Buffer.byteLength(part)} bytes)` : part))
    .join('/');
}

/** The NUL-separated records of `data`. */
function* splitNul(data: Buffer): Generator<Buffer> {
  let start = 0;
  for (let end = data.indexOf(0, start); end >= 0; end = data.indexOf(0, start)) {
    if (end > start) yield data.subarray(start, end);
    start = end + 1;
  }
  if (start < data.length) yield data.subarray(start);
}
