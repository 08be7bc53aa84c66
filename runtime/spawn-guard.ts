/**
 * @module
 * Starting a process when no file descriptor is left must fail that one start, not the whole gateway.
 * Node's `spawn` reports EMFILE and ENFILE late: it returns a child without stdio and emits 'error' on
 * it on the next tick. execa 9 reads the missing stdio at once and throws a TypeError ("subprocess.stdio
 * is not iterable") before it listens for that 'error', which then ends the process as an uncaught
 * exception (a `podman rm` under a flood of connections did exactly that). The guard makes such a
 * spawn throw synchronously instead, which execa reports as the start's own failure: a rejected
 * promise with the errno code, handled where the command was run.
 */
import childProcess from 'node:child_process';
import { readFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

let installed = false;

/** Whether the host's file table is full (ENFILE) rather than this process's descriptors (EMFILE). */
function hostTableFull(): boolean {
  try {
    const [allocated, , max] = readFileSync('/proc/sys/fs/file-nr', 'utf8').trim().split(/\s+/).map(Number);
    return allocated! >= max!;
  } catch {
    return false;
  }
}

/** Installs the guard on `child_process.spawn`, once per process. */
export function guardSpawn(): void {
  if (installed) return;
  installed = true;
  const spawn = childProcess.spawn;
  const guarded = function spawnOrThrow(this: unknown, ...args: Parameters<typeof spawn>) {
    const child = (spawn as (...a: unknown[]) => childProcess.ChildProcess).apply(this, args);
    if (child.stdio === undefined) {
      // The late 'error' is this same failure, thrown below: nothing else needs to hear it.
      child.on('error', () => {});
      const [code, errno, whose] = hostTableFull() ? (['ENFILE', -23, 'the host'] as const) : (['EMFILE', -24, 'this process'] as const);
      throw Object.assign(new Error(`spawn ${String(args[0])} ${code}: ${whose} has no file descriptor left to start it`), {
        code,
        errno,
        syscall: `spawn ${String(args[0])}`,
      });
    }
    return child;
  };
  childProcess.spawn = guarded as typeof spawn;
  // execa imports `spawn` by name: the ES module's binding follows the CommonJS export only once synced.
  syncBuiltinESMExports();
}
