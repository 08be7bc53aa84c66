/**
 * @module
 * One fnix per state folder. A second one would remove the first one's containers as leftovers at
 * start, so it is refused with the pid of the first.
 */
import { chmod, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** A held lock; release it when the runtime stops. */
export interface StateLock {
  release(): Promise<void>;
}

/** State folders locked by this process (a pid file alone cannot tell two runtimes in one process apart). */
const lockedHere = new Set<string>();

/** Options of {@link lockStateDir}. */
export interface LockOptions {
  /**
   * Runs once no live process holds the folder, before the lock file is written: what a dead process
   * left can be removed then (a full disk would otherwise refuse even the lock file).
   */
  beforeTaking?: (() => Promise<void>) | undefined;
}

/** Takes the lock on `stateDir`, taking over a lock whose process is gone. */
export async function lockStateDir(stateDir: string, options: LockOptions = {}): Promise<StateLock> {
  // fnix's own files (builds hold functions' env, run/ holds agent sockets) are root's alone.
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await chmod(stateDir, 0o700);
  const file = join(stateDir, 'fnix.pid');
  if (lockedHere.has(file)) throw inUse(stateDir, process.pid);
  await checkOwner(stateDir, file);
  await options.beforeTaking?.();
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: 'wx' });
      lockedHere.add(file);
      return {
        release: async () => {
          lockedHere.delete(file);
          await unlink(file).catch(() => {});
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      await checkOwner(stateDir, file);
    }
  }
  throw new Error(`cannot lock the state folder ${stateDir}`);
}

/** Throws when a live process holds `file`; removes it when its process is gone. */
async function checkOwner(stateDir: string, file: string): Promise<void> {
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return;
  const owner = Number(text.trim());
  if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) throw inUse(stateDir, owner);
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
