/**
 * @module
 * A small structured logger: one line per event, `time level message key=value...`, to a stream.
 *
 * Lines are written once per turn of the event loop, together: a busy gateway logs a line per
 * invocation, and one write per line was a system call on the warm path of every request. Whatever is
 * pending is written before the process exits, and at once for an error.
 */

/** Log fields; values are printed with JSON.stringify when they are not plain words. */
export type LogFields = Record<string, unknown>;

/** What runtime/ and gateway/ log through. */
export interface Logger {
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  /** @default process.stderr */
  stream?: { write(line: string): unknown };
  /** Drop info lines. @default false */
  quiet?: boolean;
}

const PLAIN_WORD = /^[\w./:@-]+$/;

/** Every live logger's flush, run as the process exits (weakly held: a logger dropped is forgotten). */
const flushers = new Set<WeakRef<() => void>>();
let exitHooked = false;

/** Creates a line logger. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const stream = options.stream ?? process.stderr;
  let pending = '';
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (pending === '') return;
    const text = pending;
    pending = '';
    stream.write(text);
  };
  flushers.add(new WeakRef(flush));
  if (!exitHooked) {
    exitHooked = true;
    process.once('exit', () => {
      for (const each of flushers) each.deref()?.();
    });
  }
  const write = (level: string, message: string, fields: LogFields | undefined, now: boolean) => {
    let line = `${new Date().toISOString()} ${level} ${message}`;
    if (fields) {
      for (const key in fields) {
        const value = fields[key];
        if (value === undefined) continue;
        const text = typeof value === 'string' && PLAIN_WORD.test(value) ? value : JSON.stringify(value);
        line += ` ${key}=${text}`;
      }
    }
    pending += `${line}\n`;
    if (now) flush();
    else if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  return {
    info: (message, fields) => {
      if (!options.quiet) write('INFO', message, fields, false);
    },
    warn: (message, fields) => write('WARN', message, fields, false),
    error: (message, fields) => write('ERROR', message, fields, true),
  };
}

/** A logger that drops everything (tests). */
export const silentLogger: Logger = { info: () => {}, warn: () => {}, error: () => {} };
