/**
 * @module
 * A small structured logger: one line per event, `time level message key=value...`, to a stream.
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

/** Creates a line logger. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const stream = options.stream ?? process.stderr;
  const write = (level: string, message: string, fields?: LogFields) => {
    let line = `${new Date().toISOString()} ${level} ${message}`;
    for (const [key, value] of Object.entries(fields ?? {})) {
      if (value === undefined) continue;
      const text = typeof value === 'string' && /^[\w./:@-]+$/.test(value) ? value : JSON.stringify(value);
      line += ` ${key}=${text}`;
    }
    stream.write(`${line}\n`);
  };
  return {
    info: (message, fields) => {
      if (!options.quiet) write('INFO', message, fields);
    },
    warn: (message, fields) => write('WARN', message, fields),
    error: (message, fields) => write('ERROR', message, fields),
  };
}

/** A logger that drops everything (tests). */
export const silentLogger: Logger = { info: () => {}, warn: () => {}, error: () => {} };
