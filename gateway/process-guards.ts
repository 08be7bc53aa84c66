/**
 * @module
 * What keeps the gateway process up when something escapes: an unhandled promise rejection or an
 * uncaught exception (an 'error' event nobody listened to) is a bug in fnix, and it is logged as one,
 * with its stack, and counted (`fnix_unhandled_errors_total`), but it does not end the process. Ending
 * it would cut every invocation and session under way for the sake of the one request the bug was in,
 * and nothing restarts a stock gateway. The test suite, where the same events fail the run, is where
 * such bugs are meant to be found.
 *
 * A closed terminal (SIGHUP, `npm start` in a window that goes away) makes writes to the log fail with
 * EIO or EPIPE: those are dropped rather than thrown.
 */
import type { Logger } from '../runtime/log.ts';

/** How each caught error's log line begins (after its level, ERROR): the tests look for it. */
export const BUG_PREFIX = 'bug: ';

/** How many unhandled errors were caught, by kind. */
export interface UnhandledCounts {
  unhandledRejection: number;
  uncaughtException: number;
}

/** Installs the guards on this process; returns the counts, which grow as they catch. */
export function guardProcess(log: Logger): () => UnhandledCounts {
  const counts: UnhandledCounts = { unhandledRejection: 0, uncaughtException: 0 };
  const report = (kind: keyof UnhandledCounts, error: unknown) => {
    counts[kind] += 1;
    try {
      log.error(`${BUG_PREFIX}${kind === 'unhandledRejection' ? 'an unhandled promise rejection' : 'an uncaught exception'}; fnix goes on serving`, {
        error: String(error),
        stack: (error as Error | undefined)?.stack,
      });
    } catch {
      // A log that cannot be written must not make this handler throw: that would end the process.
    }
  };
  process.on('unhandledRejection', (reason) => report('unhandledRejection', reason));
  process.on('uncaughtException', (error) => report('uncaughtException', error));
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});
  return () => ({ ...counts });
}
