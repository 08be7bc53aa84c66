/**
 * @module
 * The bounds of the records store, with their defaults in one place: what each function may keep
 * (log bytes, records, age) and how fast it may write (a byte budget per second). gateway/config.ts
 * reads them from the environment (FNIX_LOG_*); docs/logs.md explains them.
 */

const MIB = 1024 * 1024;
const DAY_MS = 86_400_000;

/** A line is cut at this many bytes (UTF-8) and marked ` [line cut]`, as LineSplitter cuts the lines it reads (its default). */
export const MAX_LINE_BYTES = 4096;

/**
 * What a line costs against the byte bounds besides its text: its row (time, function, invocation id,
 * instance, stream) and its index entries, so that the byte bound is one on the file, not on the text
 * alone (test/hostile/records.podman.test.ts compares the file's size with the bounds).
 */
export const LINE_OVERHEAD_BYTES = 160;

/** The store's bounds. */
export interface RecordBounds {
  /** FNIX_LOG_MAX_BYTES: log bytes kept per function (text plus {@link LINE_OVERHEAD_BYTES} a line). @default 16 MiB */
  maxLogBytes: number;
  /** FNIX_LOG_MAX_AGE: how long lines and records are kept, in ms. @default 7 days */
  maxAgeMs: number;
  /** FNIX_LOG_MAX_RECORDS: invocation records kept per function. @default 10000 */
  maxRecords: number;
  /** FNIX_LOG_RATE: log bytes a function may write per second; lines beyond are counted and dropped. @default 1 MiB */
  ratePerSecond: number;
}

/** The defaults of {@link RecordBounds}. */
export const DEFAULT_RECORD_BOUNDS: Readonly<RecordBounds> = {
  maxLogBytes: 16 * MIB,
  maxAgeMs: 7 * DAY_MS,
  maxRecords: 10_000,
  ratePerSecond: MIB,
};

/** Fills in the defaults and checks the values; a bad one is a TypeError naming it. */
export function resolveBounds(bounds: Partial<RecordBounds> = {}): RecordBounds {
  const resolved = { ...DEFAULT_RECORD_BOUNDS, ...withoutUndefined(bounds) };
  for (const [name, value] of Object.entries(resolved)) {
    if (!Number.isSafeInteger(value) || value < 1) throw new TypeError(`records bound ${name} must be a positive integer, not ${value}`);
  }
  if (resolved.maxLogBytes < MAX_LINE_BYTES + LINE_OVERHEAD_BYTES) {
    throw new TypeError(`records bound maxLogBytes must hold one whole line (${MAX_LINE_BYTES + LINE_OVERHEAD_BYTES} bytes), not ${resolved.maxLogBytes}`);
  }
  return resolved;
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** What LineSplitter appends to a cut line, and so does {@link cutLine}. */
const CUT_MARK = ' [line cut]';

/**
 * `text` cut to MAX_LINE_BYTES of UTF-8 (on a character boundary) and marked as cut, unless it is no
 * longer than that and a mark (as LineSplitter's pieces are).
 */
export function cutLine(text: string): string {
  const most = MAX_LINE_BYTES + CUT_MARK.length;
  if (text.length * 3 <= most || Buffer.byteLength(text) <= most) return text;
  const bytes = Buffer.from(text).subarray(0, MAX_LINE_BYTES);
  // A character cut in two decodes as U+FFFD at the end: drop it.
  return bytes.toString('utf8').replace(/\uFFFD$/, '') + CUT_MARK;
}
