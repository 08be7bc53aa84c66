/**
 * @module
 * Masking a function's own secrets in what fnix keeps of its output (its log lines, its records'
 * lines, the stderr quoted in a push's output or an error), the way CI systems mask theirs: each
 * occurrence of a declared value becomes `[secret NAME]`. Built once per invocation from the values
 * it is given (runner.ts, serve/instance.ts); what the function returns to its caller (stdout, a
 * session's output) is its own and is not masked.
 *
 * Not covered (docs/secrets.md): values shorter than {@link MIN_MASKED_BYTES} (masking them would
 * mask half of every line, and say what they are); a value split across a cut line (a line longer
 * than the log's line limit is cut) or across the start of a kept tail; a value the function
 * transforms (encodes, reverses, prints a part of). A value holding a newline is masked as a whole
 * where it appears whole (a quoted tail), and each of its lines of at least {@link MIN_MASKED_BYTES}
 * wherever it appears (output is kept a line at a time). A value that is not valid UTF-8 is masked
 * as it reads once decoded (its invalid bytes as U+FFFD), which is how output lines are decoded.
 */
import { isUtf8 } from 'node:buffer';
import type { SecretFile } from './delivery.ts';

/** The shortest value masked, in bytes. */
export const MIN_MASKED_BYTES = 4;

/** Masks declared values in text; {@link SecretMask.wipe} zeroes its copies of them. */
export interface SecretMask {
  (text: string): string;
  /** Zeroes the values it holds; from then on it masks nothing. */
  wipe(): void;
}

/** One value (or a line of one) to find, and what it becomes. */
interface Needle {
  bytes: Buffer;
  label: Buffer;
}

/** Masks nothing: a function declaring no secret. */
export const NO_MASK: SecretMask = Object.assign((text: string) => text, { wipe() {} });

/** A mask of the values of `secrets` (copies: the caller zeroes its own once it is done with them). */
export function secretMask(secrets: readonly SecretFile[]): SecretMask {
  const needles: Needle[] = [];
  for (const { name, data } of secrets) {
    const label = Buffer.from(`[secret ${name}]`);
    // As output lines are decoded: invalid bytes read as U+FFFD.
    const decoded = isUtf8(data) ? data : Buffer.from(data.toString('utf8'));
    const value = copy(decoded);
    if (decoded !== data) decoded.fill(0);
    const parts = splitLines(value);
    if (value.length >= MIN_MASKED_BYTES) needles.push({ bytes: value, label });
    if (parts.length > 1) for (const part of parts) if (part.length >= MIN_MASKED_BYTES) needles.push({ bytes: copy(part), label });
  }
  if (needles.length === 0) return NO_MASK;
  // Longest first: where a value and one of its lines both match, the value's mask wins.
  needles.sort((a, b) => b.bytes.length - a.bytes.length);
  const shortest = needles.at(-1)!.bytes.length;
  let wiped = false;
  const mask = (text: string): string => {
    // A UTF-16 unit is at most 3 bytes of UTF-8: shorter text cannot hold the shortest value.
    if (wiped || text.length * 3 < shortest) return text;
    const bytes = Buffer.from(text);
    const found: { start: number; end: number; label: Buffer }[] = [];
    for (const needle of needles) {
      for (let at = bytes.indexOf(needle.bytes); at !== -1; at = bytes.indexOf(needle.bytes, at + needle.bytes.length)) {
        found.push({ start: at, end: at + needle.bytes.length, label: needle.label });
      }
    }
    if (found.length === 0) return text;
    found.sort((a, b) => a.start - b.start || b.end - a.end);
    const pieces: Buffer[] = [];
    let cursor = 0;
    for (const match of found) {
      if (match.start < cursor) continue; // inside one masked already
      pieces.push(bytes.subarray(cursor, match.start), match.label);
      cursor = match.end;
    }
    pieces.push(bytes.subarray(cursor));
    const masked = Buffer.concat(pieces).toString('utf8');
    bytes.fill(0);
    return masked;
  };
  return Object.assign(mask, {
    wipe() {
      wiped = true;
      for (const needle of needles) needle.bytes.fill(0);
    },
  });
}

/** A copy outside Node's shared pool, so that zeroing it leaves no other copy there. */
function copy(data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafeSlow(data.length);
  out.set(data);
  return out;
}

/** The lines of `value` (split at LF, a CR before it dropped, as output lines are). */
function splitLines(value: Buffer): Buffer[] {
  const parts: Buffer[] = [];
  let start = 0;
  for (let at = value.indexOf(0x0a); at !== -1; at = value.indexOf(0x0a, start)) {
    parts.push(trimCr(value.subarray(start, at)));
    start = at + 1;
  }
  parts.push(trimCr(value.subarray(start)));
  return parts;
}

function trimCr(line: Buffer): Buffer {
  return line.at(-1) === 0x0d ? line.subarray(0, -1) : line;
}
