/**
 * @module
 * One fnix per state folder. A second one would remove the first one's containers as leftovers at
 * start, so it is refused with the pid of the first. The lock is a pid file created exclusively; once
 * it is this process's, what a dead process left in the folder is tidied away (and first, when the disk
 * is too full to take even the pid).
 */
import { chmod, type FileHandle, mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode } from './fs-errors.ts';

/** A held lock; release it when the runtime stops. */
export interface StateLock {
  release(): Promise<void>;
}

/** Options of {@link lockStateDir}. */
export interface LockOptions {
  /**
   * Removes what a dead process left in the folder. It runs once the lock is this process's, so that
   * it can never touch the files of another fnix that is running.
   */
  tidy?: (() => Promise<void>) | undefined;
}

/** State folders locked by this process (a pid file alone cannot tell two runtimes in one process apart). */
const lockedHere = new Set<string>();
/** How long a pid file with no pid yet counts as another process taking the lock (it writes it next). */
const TAKING_MS = 60_000;

/** Takes the lock on `stateDir`, taking over a lock whose process is gone. */
export async function lockStateDir(stateDir: string, options: LockOptions = {}): Promise<StateLock> {
  // fnix's own files (builds hold functions' env, run/ holds agent sockets) are root's alone.
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await chmod(stateDir, 0o700);
  const file = join(stateDir, 'fnix.pid');
  if (lockedHere.has(file)) throw inUse(stateDir, process.pid);
  for (let attempt = 0; attempt < 2; attempt++) {
    let handle: FileHandle;
    try {
      // An empty file needs no room on the disk, so even a full one gives the lock.
      handle = await open(file, 'wx', 0o600);
    } catch (error) {
      if (errnoCode(error) !== 'EEXIST') throw error;
      await checkOwner(stateDir, file);
      continue;
    }
    try {
      const pid = `${process.pid}\n`;
      try {
        await handle.write(pid, 0);
        await options.tidy?.();
      } catch (error) {
        if (errnoCode(error) !== 'ENOSPC' && errnoCode(error) !== 'EDQUOT') throw error;
        // The disk is full, perhaps of what a dead push left: that goes first, then the pid.
        await options.tidy?.();
        await handle.write(pid, 0);
      }
    } catch (error) {
      await handle.close();
      await unlink(file).catch(() => {});
      throw error;
    }
    await handle.close();
    lockedHere.add(file);
    return {
      release: async () => {
        lockedHere.delete(file);
        await unlink(file).catch(() => {});
      },
    };
  }
  throw new Error(`cannot lock the state folder ${stateDir}`);
}

/** Throws when a live process holds `file` (or is taking it); removes it when its process is gone. */
async function checkOwner(stateDir: string, file: string): Promise<void> {
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return;
  const owner = Number(text.trim());
  if (text.trim() === '') {
    const info = await stat(file).catch(() => undefined);
    if (info && Date.now() - info.mtimeMs < TAKING_MS) {
      throw new Error(`the state folder ${stateDir} is being taken by another fnix process: wait for it, or give this one another FNIX_STATE_DIR`);
    }
  } else if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) {
    throw inUse(stateDir, owner);
  }
  await unlink(file).catch(() => {}); // a stale lock from a process that is gone
}

function inUse(stateDir: string, pid: number): Error {
  return new Error(`the state folder ${stateDir} is in use by fnix process ${pid}: stop it, or give this one another FNIX_STATE_DIR`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
