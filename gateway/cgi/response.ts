/**
 * @module
 * The header block a `"cgi": true` function writes before its body (RFC 3875, section 6): `Status:`,
 * `Content-Type:`, `Location:` and any other headers, then a blank line.
 */
import { FnixError } from '../../runtime/errors.ts';

/** The parsed header block. */
export interface CgiHead {
  status: number;
  headers: Array<[string, string]>;
}

/** The most header bytes a function may write before the blank line. */
export const MAX_CGI_HEADER_BYTES = 64 * 1024;
/**
 * Headers a function may not set: the gateway owns the framing of the response, the invocation id, and
 * `x-fnix-error`, which says that an error is the gateway's own (gateway/errors.ts).
 */
const DROPPED = new Set(['connection', 'content-length', 'keep-alive', 'transfer-encoding', 'upgrade', 'trailer', 'x-fnix-invocation-id', 'x-fnix-error']);
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** What RFC 9110 (and Node) refuse in a field value: control bytes but tab, and DEL. (The text is read as latin1.) */
const FORBIDDEN_IN_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
/** Statuses whose responses have no body (RFC 9110): what the function writes after its head is dropped. */
export const NO_BODY_STATUSES: ReadonlySet<number> = new Set([204, 205, 304]);

/** Accumulates stdout until the header block is complete. */
export class CgiHeadParser {
  #buffer: Buffer = Buffer.alloc(0);

  /** Feeds stdout bytes; returns the head and the body bytes after it once the blank line arrived. */
  push(chunk: Buffer): { head: CgiHead; rest: Buffer } | undefined {
    this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk;
    const end = findBlankLine(this.#buffer);
    if ((end ? end.headEnd : this.#buffer.length) > MAX_CGI_HEADER_BYTES) {
      throw badResponse(`its CGI headers exceed ${MAX_CGI_HEADER_BYTES} bytes`);
    }
    if (!end) return undefined;
    const head = parseHead(this.#buffer.subarray(0, end.headEnd).toString('latin1'));
    return { head, rest: this.#buffer.subarray(end.bodyStart) };
  }
}

/** Builds the FUNCTION_BAD_RESPONSE error for a function whose output is not a CGI response. */
export function badResponse(reason: string): FnixError {
  return new FnixError('FUNCTION_BAD_RESPONSE', `the function has "cgi": true but ${reason}; write headers, a blank line, then the body`);
}

function findBlankLine(buffer: Buffer): { headEnd: number; bodyStart: number } | undefined {
  for (let i = buffer.indexOf(0x0a); i !== -1; i = buffer.indexOf(0x0a, i + 1)) {
    if (i === 0) return { headEnd: 0, bodyStart: 1 };
    if (buffer[i - 1] === 0x0a) return { headEnd: i - 1, bodyStart: i + 1 };
    if (buffer[i - 1] === 0x0d && (i === 1 || buffer[i - 2] === 0x0a)) return { headEnd: Math.max(0, i - 2), bodyStart: i + 1 };
  }
  return undefined;
}

function parseHead(text: string): CgiHead {
  let status: number | undefined;
  let location = false;
  let contentType = false;
  const headers: Array<[string, string]> = [];
  for (const rawLine of text.split('\n')) {
    const line = rawLine.replace(/\r$/, '');
    if (line === '') continue;
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon).trim() : '';
    if (!TOKEN.test(name)) throw badResponse(`its header line ${JSON.stringify(line.slice(0, 80))} is not "Name: value"`);
    const value = line.slice(colon + 1).trim();
    const lower = name.toLowerCase();
    if (lower === 'status') {
      const match = /^([1-5]\d\d)(\s.*)?$/.exec(value);
      if (!match || Number(match[1]) < 200) throw badResponse(`its Status header ${JSON.stringify(value)} is not a status code from 200 to 599`);
      status = Number(match[1]);
    } else if (!DROPPED.has(lower)) {
      const bad = FORBIDDEN_IN_VALUE.exec(value);
      if (bad) {
        const byte = `0x${bad[0].charCodeAt(0).toString(16).padStart(2, '0')}`;
        throw badResponse(`its ${name} header holds the byte ${byte}, which HTTP does not allow in a header value (only tab, 0x20-0x7e and 0x80-0xff)`);
      }
      if (lower === 'location') location = true;
      if (lower === 'content-type') contentType = true;
      headers.push([name, value]);
    }
  }
  if (!contentType) headers.push(['Content-Type', 'application/octet-stream']);
  return { status: status ?? (location ? 302 : 200), headers };
}
