/**
 * @module
 * Turns a running invocation into an HTTP response. The status line waits until the client has sent the
 * whole request body (so an oversized body still gets its 413) and until the function has written
 * something or ended (so a failure before any output gets its 502 or 504). From then on stdout
 * streams through as it is produced; a failure after that aborts the connection, so the client sees a
 * truncated transfer and never a clean end.
 */
import type { Invocation } from '../../runtime/invocation/invocation.ts';
import { CgiHeadParser, NO_BODY_STATUSES, badResponse, type CgiHead } from '../cgi/response.ts';
import { bodyTooLarge } from '../errors.ts';
import type { BodyOutcome } from './request-body.ts';

/** What {@link respondWithInvocation} needs. */
export interface FunctionResponseOptions {
  invocation: Invocation;
  /** Settles when the client's request body has ended (runtime of the function aside). */
  body: Promise<BodyOutcome>;
  cgi: boolean;
  maxBody: number;
  /** Headers every response carries (the invocation id). */
  headers: Record<string, string>;
  /** The request's method: a HEAD response's headers are built differently (see initOf). */
  method: string;
  /** Tears the client connection down without ending the response cleanly. */
  abortConnection: () => void;
}

/**
 * Output held while the body is still arriving; beyond it the function is made to wait (the body is read
 * independently of the function, so this cannot deadlock).
 */
export const HOLD_LIMIT = 1024 * 1024;
const DEFAULT_HEAD: CgiHead = { status: 200, headers: [['content-type', 'application/octet-stream']] };

/**
 * Waits for the moment the response can start and returns it. Throws (before anything is sent) the
 * invocation's error, BODY_TOO_LARGE or FUNCTION_BAD_RESPONSE; the caller then kills the invocation.
 */
export async function respondWithInvocation(options: FunctionResponseOptions): Promise<Response> {
  const { invocation, cgi } = options;
  const stdout = invocation.stdout[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const held: Buffer[] = [];
  let heldBytes = 0;
  // An object, so that the type checker does not narrow a field that a callback sets.
  const request: { body: BodyOutcome | 'pending' } = { body: 'pending' };
  const bodySettled = options.body.then((outcome) => {
    request.body = outcome;
  });
  const bodyArrived = bodySettled.then(() => 'body' as const);
  const parser = cgi ? new CgiHeadParser() : undefined;
  let head: CgiHead | undefined = cgi ? undefined : DEFAULT_HEAD;
  let next: Promise<IteratorResult<Buffer>> | undefined;
  let ended = false;

  // Start once the body is in and there is something to send: output, or (cgi) a complete header block.
  // A function that has already ended has its output buffered here: it is read to the end, so the
  // response goes out whole, with a Content-Length (and a late failure is still a clean error).
  const ready = () => head && request.body !== 'pending' && (heldBytes > 0 || cgi) && !(invocation.finished && heldBytes < HOLD_LIMIT);
  while (!ready()) {
    if (request.body === 'too_large') break;
    if (heldBytes < HOLD_LIMIT) next ??= stdout.next();
    // Only promises that settle within this request: a race against a promise that never settles would
    // leave a reaction on it per race, each holding the race's result (a chunk of output) for ever.
    const contenders: Array<Promise<IteratorResult<Buffer> | 'body'>> = [];
    if (next) contenders.push(next);
    if (request.body === 'pending') contenders.push(bodyArrived);
    const step = await Promise.race(contenders);
    if (step === 'body') continue;
    next = undefined;
    if (step.done) {
      ended = true;
      break;
    }
    let chunk = step.value;
    if (parser && !head) {
      const parsed = parser.push(chunk);
      if (!parsed) continue;
      head = parsed.head;
      chunk = parsed.rest;
    }
    if (chunk.length > 0) {
      held.push(chunk);
      heldBytes += chunk.length;
    }
  }

  // A function that ended before its body did is answered once the body has: a body over the limit
  // still gets its 413.
  if (ended) await bodySettled;
  if (request.body === 'too_large') throw bodyTooLarge(options.maxBody);
  // A plain object, not a Headers: @hono/node-server hands it to writeHead as it is. No prototype, so
  // that a header named `constructor` or `__proto__` is a header like any other.
  const headers: OutgoingHeaders = Object.assign(Object.create(null) as OutgoingHeaders, options.headers);
  const asInit = (all: OutgoingHeaders) => initOf(all, options.method === 'HEAD');
  if (ended) {
    const result = await invocation.done;
    if (result.error) throw result.error;
    if (!head) throw badResponse('it exited before writing the blank line that ends its headers');
    appendHeaders(headers, head.headers);
    if (NO_BODY_STATUSES.has(head.status)) return noBody(head.status, headers, options.method);
    const body = heldBytes ? (held.length === 1 ? held[0]! : Buffer.concat(held)) : null;
    return new Response(body as BodyInit | null, { status: head.status, headers: asInit(headers) });
  }
  appendHeaders(headers, head!.headers);
  if (NO_BODY_STATUSES.has(head!.status)) {
    discardRest(next, stdout);
    return noBody(head!.status, headers, options.method);
  }
  return new Response(streamRest(held, next, stdout, options), { status: head!.status, headers: asInit(headers) });
}

/** Response headers by lower-case name; a repeated one (Set-Cookie) has its values in order. */
export type OutgoingHeaders = Record<string, string | string[]>;

/**
 * @hono/node-server passes a plain object of headers to Node's writeHead as it is, and writeHead takes
 * a list for a repeated header; the fetch types know only strings. A HEAD response is the exception:
 * Hono makes a new Response of the GET route's, which would join a list into one value (two Set-Cookie
 * headers into one), so it gets a Headers, each value appended.
 */
export function initOf(headers: OutgoingHeaders, isHead: boolean): HeadersInit {
  if (!isHead) return headers as unknown as HeadersInit;
  const list = new Headers();
  for (const name in headers) for (const value of ([] as string[]).concat(headers[name]!)) list.append(name, value);
  return list;
}

function appendHeaders(into: OutgoingHeaders, pairs: ReadonlyArray<readonly [string, string]>): void {
  for (const [name, value] of pairs) {
    const key = name.toLowerCase();
    const existing = into[key];
    if (existing === undefined) into[key] = value;
    else if (Array.isArray(existing)) existing.push(value);
    else into[key] = [existing, value];
  }
}

/**
 * 204, 205 and 304 have no body (RFC 9110), whatever the function wrote after its head. A 205 says so
 * with `Content-Length: 0` (Node would frame it as an empty chunked body); 204 and 304 Node sends bare.
 */
function noBody(status: number, headers: OutgoingHeaders, method: string): Response {
  if (status === 205) headers['content-length'] = '0';
  return new Response(null, { status, headers: initOf(headers, method === 'HEAD') });
}

/** Reads the rest of stdout and drops it, so that the function can write to its end. */
function discardRest(pending: Promise<IteratorResult<Buffer>> | undefined, stdout: AsyncIterator<Buffer>): void {
  void (async () => {
    if (pending && (await pending).done) return;
    while (!(await stdout.next()).done);
  })().catch(() => {});
}

/** The rest of stdout as a body: the chunks already held, then a read already under way, then the rest. */
function streamRest(
  held: Buffer[],
  pending: Promise<IteratorResult<Buffer>> | undefined,
  stdout: AsyncIterator<Buffer>,
  options: FunctionResponseOptions,
): ReadableStream<Uint8Array> {
  const { invocation } = options;
  let aborted = false;
  let nextRead = pending;
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        for (const chunk of held) controller.enqueue(chunk);
      },
      async pull(controller) {
        const read = nextRead ?? stdout.next();
        nextRead = undefined;
        const step = await read;
        if (aborted) return;
        if (!step.done) {
          controller.enqueue(step.value);
          return;
        }
        const result = await invocation.done;
        if (result.error) {
          aborted = true;
          options.abortConnection();
        } else {
          controller.close();
        }
      },
      cancel() {
        aborted = true;
        invocation.kill('aborted');
      },
    },
    { highWaterMark: 0 },
  );
}
