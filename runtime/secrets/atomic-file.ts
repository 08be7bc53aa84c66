/**
 * @module
 * Writing a small file whole or not at all: a temporary file beside it (mode as asked), fsync, then
 * rename over the target and fsync the folder, so that a crash leaves the old file or the new one,
 * never a part of either. {@link createFileOnce} does the same for a file that must never be replaced.
 */
import { randomBytes } from 'node:crypto';
import { link, open, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Replaces `path` with `data`, atomically; the file gets `mode` whatever the umask. */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const temporary = await writeTemporary(path, data, mode);
  try {
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  await syncFolder(dirname(path));
}

/**
 * Creates `path` with `data` unless it exists; resolves with false when it did (another process made
 * it first: read that one). The file appears whole: it is written aside and hard-linked into place,
 * which fails when the name is taken, where a rename would replace it.
 */
export async function createFileOnce(path: string, data: string | Uint8Array, mode: number): Promise<boolean> {
  const temporary = await writeTemporary(path, data, mode);
  try {
    await link(temporary, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await rm(temporary, { force: true });
  }
  await syncFolder(dirname(path));
  return true;
}

/**
 * Removes the temporary files that {@link writeFileAtomic} and {@link createFileOnce} leave beside
 * `path` when the process dies between writing one and renaming it (`<name>.<pid>.<hex>.tmp`); call
 * it when the store opens, once the state folder is this process's. Resolves with the paths removed.
 */
export async function removeTemporaries(path: string): Promise<string[]> {
  return removeMatching(dirname(path), new RegExp(`^${escapeRegExp(basename(path))}\\.\\d+\\.[0-9a-f]+\\.tmp$`));
}

/** Removes the files of `dir` whose name matches `pattern`; resolves with their paths. A missing folder has none. */
export async function removeMatching(dir: string, pattern: RegExp): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!pattern.test(name)) continue;
    await rm(join(dir, name), { force: true });
    removed.push(join(dir, name));
  }
  return removed;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

async function writeTemporary(path: string, data: string | Uint8Array, mode: number): Promise<string> {
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await open(temporary, 'wx', mode);
  try {
    await handle.chmod(mode); // open's mode goes through the umask
    await handle.writeFile(data);
    await handle.sync();
  } catch (error) {
    await handle.close();
    await rm(temporary, { force: true });
    throw error;
  }
  await handle.close();
  return temporary;
}

/** Makes a rename or link in `dir` durable. */
async function syncFolder(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
