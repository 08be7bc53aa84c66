/**
 * @module
 * Asking the other members of a cluster over HTTP, for the routes that gather what each node keeps
 * (gateway/routes/logs-cluster.ts): one JSON answer, bounded in time and in bytes, or a stream of
 * NDJSON values, bounded per line. Every call carries the admin token. A member that does not answer
 * comes back as an error naming what happened (refused, timed out, cut, a status), never as a hang:
 * each JSON call has its own timeout, and the caller's close ends a stream at once.
 */
import { Agent, type Dispatcher, request } from 'undici';
import type { ClusterMember } from '../cluster/view.ts';

/** How long a member has to answer (a JSON answer whole; a stream its head, see the caller). */
export const MEMBER_TIMEOUT_MS = 2000;
/** The most bytes read of one member's JSON answer; beyond, it is cut and named. */
export const MAX_MEMBER_ANSWER_BYTES = 16 * 1024 * 1024;
/** The longest line of a member's NDJSON stream (a log line is at most about 25 KiB as JSON). */
export const MAX_MEMBER_LINE_BYTES = 256 * 1024;

/** A member's answer: its status and its JSON body, or why there is none. */
export type MemberAnswer = { node: string; status: number; body: unknown } | { node: string; error: string };

/** What a stream tells its caller. */
export interface StreamHandlers {
  /** Each JSON value, with the bytes of its line. */
  onValue(value: unknown, bytes: number): void;
  /** Once, at the end: `error` says why it ended badly, undefined when the member ended it. Not called after {@link MemberStream.close}. */
  onEnd(error: string | undefined): void;
}

/** A stream being read; close() ends it and silences its handlers. */
export interface MemberStream {
  close(): void;
}

/** Options of {@link MemberClient}. */
export interface MemberClientOptions {
  /** The admin token (FNIX_TOKEN, the same on every node). */
  token: string;
  /** @default MEMBER_TIMEOUT_MS */
  timeoutMs?: number | undefined;
  /** @default MAX_MEMBER_ANSWER_BYTES */
  maxAnswerBytes?: number | undefined;
  /** @default MAX_MEMBER_LINE_BYTES */
  maxLineBytes?: number | undefined;
}

/** Calls to the other members, over one connection pool. */
export class MemberClient {
  readonly timeoutMs: number;
  readonly maxAnswerBytes: number;
  readonly #token: string;
  readonly #maxLineBytes: number;
  readonly #agent: Dispatcher;

  constructor(options: MemberClientOptions) {
    this.#token = options.token;
    this.timeoutMs = options.timeoutMs ?? MEMBER_TIMEOUT_MS;
    this.maxAnswerBytes = options.maxAnswerBytes ?? MAX_MEMBER_ANSWER_BYTES;
    this.#maxLineBytes = options.maxLineBytes ?? MAX_MEMBER_LINE_BYTES;
    // No timeouts of undici's own: a follow is quiet for as long as its function is, and ours name the member.
    this.#agent = new Agent({ connect: { timeout: this.timeoutMs }, headersTimeout: 0, bodyTimeout: 0, keepAliveTimeout: 4000 });
  }

  /** GET `path` (from /api) of `member`, its JSON answer read whole within the timeout and the byte bound. */
  async json(member: ClusterMember, path: string, signal?: AbortSignal): Promise<MemberAnswer> {
    const node = member.name;
    const controller = new AbortController();
    const abort = () => controller.abort();
    signal?.addEventListener('abort', abort, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.timeoutMs);
    let text: string;
    let status: number;
    try {
      const answer = await request(urlOf(member, path), {
        method: 'GET',
        headers: { authorization: `Bearer ${this.#token}`, accept: 'application/json' },
        signal: controller.signal,
        dispatcher: this.#agent,
      });
      status = answer.statusCode;
      const chunks: Buffer[] = [];
      let bytes = 0;
      for await (const chunk of answer.body as AsyncIterable<Buffer>) {
        bytes += chunk.length;
        if (bytes > this.maxAnswerBytes) {
          answer.body.destroy();
          return { node, error: `its answer passed ${formatMiB(this.maxAnswerBytes)} and was cut: ask for less (limit=, since=)` };
        }
        chunks.push(chunk);
      }
      text = Buffer.concat(chunks).toString('utf8');
    } catch (error) {
      if (timedOut) return { node, error: `no answer within ${seconds(this.timeoutMs)}` };
      if (signal?.aborted) return { node, error: 'not asked any more: the request was answered or went away' };
      return { node, error: failureOf(error) };
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', abort);
    }
    try {
      return { node, status, body: JSON.parse(text) as unknown };
    } catch {
      return { node, error: `it answered ${status} with something that is not JSON: ${JSON.stringify(text.slice(0, 120))}` };
    }
  }

  /**
   * GET `path` of `member` as NDJSON: each value to `handlers.onValue` as it comes, until the member
   * ends it, it breaks, or close() is called. A status other than 200 ends it with that error. No
   * timeout here: the caller bounds how long it waits for what it expects.
   */
  stream(member: ClusterMember, path: string, handlers: StreamHandlers): MemberStream {
    const controller = new AbortController();
    let closed = false;
    const end = (error: string | undefined) => {
      if (closed) return;
      closed = true;
      controller.abort();
      handlers.onEnd(error);
    };
    const read = async () => {
      const answer = await request(urlOf(member, path), {
        method: 'GET',
        headers: { authorization: `Bearer ${this.#token}`, accept: 'application/x-ndjson' },
        signal: controller.signal,
        dispatcher: this.#agent,
      });
      if (answer.statusCode !== 200) {
        const text = await boundedText(answer.body as AsyncIterable<Buffer>, 64 * 1024).catch(() => '');
        return end(describeStatus(answer.statusCode, text));
      }
      let pending: Buffer = Buffer.alloc(0);
      for await (const chunk of answer.body as AsyncIterable<Buffer>) {
        if (closed) return;
        pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
        let newline = pending.indexOf(10);
        while (newline >= 0) {
          const line = pending.subarray(0, newline);
          pending = pending.subarray(newline + 1);
          if (line.length > 0) {
            let value: unknown;
            try {
              value = JSON.parse(line.toString('utf8'));
            } catch {
              return end(`it sent a line that is not JSON: ${JSON.stringify(line.toString('utf8').slice(0, 120))}`);
            }
            handlers.onValue(value, line.length + 1);
            if (closed) return;
          }
          newline = pending.indexOf(10);
        }
        if (pending.length > this.#maxLineBytes) return end(`it sent a line longer than ${this.#maxLineBytes} bytes: cut`);
      }
      end(undefined);
    };
    read().catch((error: unknown) => end(failureOf(error)));
    return {
      close: () => {
        closed = true;
        controller.abort();
      },
    };
  }

  /** Closes the pool's connections (the streams still open break). */
  async close(): Promise<void> {
    await this.#agent.destroy();
  }
}

/** What an answer other than 200 says: its status and the fnix error in its body, when it has one. */
export function describeStatus(status: number, text: string): string {
  const error = errorOf(safeParse(text));
  return error ? `it answered ${status} ${error.code}: ${error.message}` : `it answered ${status}`;
}

/** The `{"error":{code,message}}` of a fnix error body, or undefined. */
export function errorOf(body: unknown): { code: string; message: string } | undefined {
  const error = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  if (typeof error?.code !== 'string') return undefined;
  return { code: error.code, message: typeof error.message === 'string' ? error.message : '' };
}

function urlOf(member: ClusterMember, path: string): string {
  return `${member.url.replace(/\/+$/, '')}${path}`;
}

async function boundedText(body: AsyncIterable<Buffer>, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    bytes += chunk.length;
    if (bytes > max) break;
  }
  return Buffer.concat(chunks).subarray(0, max).toString('utf8');
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** A connection failure, as people read it: `connect ECONNREFUSED 10.0.0.3:8080`. */
function failureOf(error: unknown): string {
  const { code, message } = error as { code?: string; message?: string };
  const text = message || String(error);
  return code && !text.includes(code) ? `${text} (${code})` : text;
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

function formatMiB(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${Number((bytes / 1024 / 1024).toFixed(1))} MiB` : `${bytes} bytes`;
}
