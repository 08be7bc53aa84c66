/**
 * @module
 * One fnix per state folder. A second one would remove the first one's containers as leftovers at
 * start, so it is refused with the pid of the first.
 */
import { mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** A held lock; release it when the runtime stops. */
export interface StateLock {
  release(): Promise<void>;
}

/** Takes the lock on `stateDir`, taking over a lock whose process is gone. */
export async function lockStateDir(stateDir: string): Promise<StateLock> {
  await mkdir(stateDir, { recursive: true });
  const file = join(stateDir, 'fnix.pid');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: 'wx' });
      return { release: () => unlink(file).catch(() => {}) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = Number((await readFile(file, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) {
        throw new Error(`the state folder ${stateDir} is in use by fnix process ${owner}: stop it, or give this one another FNIX_STATE_DIR`);
      }
      await unlink(file).catch(() => {}); // a stale lock from a process that is gone
    }
  }
  throw new Error(`cannot lock the state folder ${stateDir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
