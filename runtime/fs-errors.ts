/**
 * @module
 * What a failed file-system call means to whoever reads the message: the errno code in words, and what
 * to do about it. Pushes, builds and records all write under the state folder, and each says the same.
 */

/** The errno codes a write can fail with for reasons outside fnix, in words. */
const MEANINGS: Record<string, string> = {
  ENOSPC: 'no space is left on the disk that holds the state folder (ENOSPC); free some, or give FNIX_STATE_DIR more room',
  EDQUOT: 'the disk quota of the state folder is used up (EDQUOT)',
  ENAMETOOLONG: 'the name is too long for the file system (ENAMETOOLONG)',
  EROFS: 'the state folder is on a read-only file system (EROFS)',
  EIO: 'the disk reported an I/O error (EIO)',
  EMFILE: 'fnix has too many files open (EMFILE); raise its open-files limit (ulimit -n)',
  ENFILE: 'the host has too many files open (ENFILE)',
  ENOMEM: 'the host is out of memory (ENOMEM)',
};

/** The errno code of a system error (one with a `syscall`, as Node's are), if `error` is one. */
export function errnoCode(error: unknown): string | undefined {
  const { code, syscall } = (error ?? {}) as NodeJS.ErrnoException;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) && typeof syscall === 'string' ? code : undefined;
}

/**
 * A file-system error in words: the meaning of its code when it is one of those above (a full disk, a
 * quota, a name too long...), else its own message without the path (the caller names the file).
 */
export function describeFsError(error: unknown): string {
  const code = errnoCode(error);
  if (code && MEANINGS[code]) return MEANINGS[code];
  const message = String((error as Error)?.message ?? error);
  // Node's messages read `ENOENT: no such file or directory, open '/state/...'`: the path is the caller's to give.
  return message.replace(/, \w+ '[^']*'( -> '[^']*')?$/, '');
}
