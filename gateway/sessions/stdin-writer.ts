/**
 * @module
 * A client's stdin frames to its command, bounded. Frames are written as they come (so that resize and
 * signal frames behind them act at once) until more than {@link STDIN_QUEUE_LIMIT} bytes, or more than
 * {@link STDIN_QUEUE_WRITES} writes, wait for a command that is not reading; then the writer says it is
 * blocked, and the session stops reading the socket until the command catches up.
 *
 * The frames that arrive together (one read of the socket can hold thousands) go to stdin as one write:
 * queued one by one, a flood of one-byte frames to a command that does not read would cost about 100
 * bytes of memory per byte.
 */
import type { Writable } from 'node:stream';

/** Stdin bytes queued for a command that does not read them, before fnix stops reading the socket. */
export const STDIN_QUEUE_LIMIT = 1024 * 1024;
/** Stdin writes waiting, at most, before fnix stops reading the socket: each costs memory of its own, whatever its size. */
export const STDIN_QUEUE_WRITES = 64;
/** What a terminal user types for end of input. */
const CTRL_D = Buffer.of(0x04);

/** Options of {@link createStdinWriter}. */
export interface StdinWriterOptions {
  /** The command's stdin. */
  stdin: Writable;
  /** The command runs on a pseudo-terminal, which has no end of input of its own. */
  tty: boolean;
  /** Settles when the command has ended: a blocked writer is unblocked then, as no 'drain' will come. */
  commandDone: Promise<unknown>;
  /** Told `true` when stdin is full (stop reading the socket), and `false` once it has room again. */
  onBlocked: (blocked: boolean) => void;
}

/** Writes a session's stdin frames. */
export interface StdinWriter {
  /** Queues `data`: what is queued in one turn of the event loop is written as one. Dropped once stdin has ended. */
  write(data: Buffer): void;
  /**
   * End of input: what is queued is written, then stdin ends; on a pseudo-terminal, Ctrl-D is written
   * instead, which the line discipline turns into end-of-file for a reader at the start of a line.
   */
  end(): void;
}

/** A writer of stdin frames to `stdin`. */
export function createStdinWriter(options: StdinWriterOptions): StdinWriter {
  const { stdin, onBlocked } = options;
  let blocked = false;
  let pending: Buffer[] = [];
  let writes = 0;
  let flushScheduled = false;
  const unblock = () => {
    if (!blocked) return;
    blocked = false;
    // Unblocked by the last write's callback rather than by 'drain' (which comes only after a write
    // that returned false): the listener goes, so that they cannot pile up over a long session.
    stdin.off('drain', unblock);
    onBlocked(false);
  };
  const block = () => {
    if (blocked) return;
    blocked = true;
    onBlocked(true);
    stdin.once('drain', unblock);
  };
  // 'drain' never comes once stdin is ending or the command is gone.
  stdin.once('finish', unblock);
  void options.commandDone.then(unblock);

  function flush(): void {
    flushScheduled = false;
    if (pending.length === 0) return;
    const chunk = pending.length === 1 ? pending[0]! : Buffer.concat(pending);
    pending = [];
    if (stdin.writableEnded) return;
    writes += 1;
    stdin.write(chunk, () => {
      writes -= 1;
      if (writes === 0) unblock();
    });
    if (stdin.writableLength > STDIN_QUEUE_LIMIT || writes > STDIN_QUEUE_WRITES) block();
  }

  return {
    write(data) {
      if (stdin.writableEnded) return;
      pending.push(data);
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flush);
      }
    },
    end() {
      flush();
      if (options.tty) stdin.write(CTRL_D);
      else stdin.end();
    },
  };
}
