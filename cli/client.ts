/**
 * @module
 * The gateway's HTTP API as the CLI calls it: through fetch for the API (the deploy token on /api
 * routes), and through node:http for an invocation ({@link FnixClient.request}), which must send only the
 * headers given and hand the body back as it came (fetch asks for gzip unasked and decodes it). A gateway
 * error becomes a {@link CliError} with its code and message; a gateway that cannot be reached, or a
 * connection lost mid-answer, is named with its URL.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { CliError, parseGatewayError } from './errors.ts';
import type { Settings } from './settings.ts';

/** The header that names an invocation. */
export const INVOCATION_ID_HEADER = 'x-fnix-invocation-id';
/**
 * The header the gateway puts on its own error responses (`x-fnix-error: <CODE>`, docs/http.md): what
 * tells them from a function's answer, whatever its status and body.
 */
export const ERROR_HEADER = 'x-fnix-error';

/** What {@link FnixClient.errorOf} reads of a response: a fetch Response is one, and so is an {@link Answer}. */
export interface ResponseHead {
  status: number;
  statusText: string;
  url: string;
  headers: Headers;
}

/** An answer read with node:http: its head as sent, and its body as a stream of the bytes sent. */
export interface Answer extends ResponseHead {
  /** The headers as sent, `[name, value, name, value, ...]`: spelling, order and repeats kept. */
  rawHeaders: string[];
  body: IncomingMessage;
}

/** A request's options beyond fetch's. */
export interface CallOptions extends Omit<RequestInit, 'headers'> {
  headers?: Record<string, string>;
  /** Send the deploy token. @default true for /api paths */
  token?: boolean;
}

/** The gateway's API. */
export class FnixClient {
  readonly url: string;
  readonly #settings: Settings;

  constructor(settings: Settings) {
    this.#settings = settings;
    this.url = settings.url;
  }

  /** The settings it was made with. */
  get settings(): Settings {
    return this.#settings;
  }

  /** A request to `path` (which starts with /); any answer, error statuses included. Throws GATEWAY_UNREACHABLE. */
  async fetch(path: string, options: CallOptions = {}): Promise<Response> {
    const { token = path.startsWith('/api'), headers = {}, ...init } = options;
    const sent: Record<string, string> = { ...headers };
    if (token && this.#settings.token && !hasHeader(sent, 'authorization')) sent['authorization'] = `Bearer ${this.#settings.token}`;
    try {
      return await fetch(`${this.url}${path}`, { ...init, headers: sent, redirect: 'manual' });
    } catch (error) {
      if ((error as Error).name === 'AbortError') throw error;
      throw unreachable(this.url, error);
    }
  }

  /**
   * A request to `path` with node:http(s), which sends the headers given and no others but Host,
   * `Connection: close` and the body's Content-Length (no Accept-Encoding, no User-Agent), and does not
   * decode the answer. Throws GATEWAY_UNREACHABLE when no answer comes.
   */
  request(path: string, options: { method: string; headers?: Record<string, string>; body?: Uint8Array | undefined; token?: boolean }): Promise<Answer> {
    const { method, headers = {}, body, token = path.startsWith('/api') } = options;
    const sent: Record<string, string> = { ...headers };
    if (token && this.#settings.token && !hasHeader(sent, 'authorization')) sent['authorization'] = `Bearer ${this.#settings.token}`;
    if (body && !hasHeader(sent, 'content-length')) sent['content-length'] = String(body.length);
    const url = `${this.url}${path}`;
    return new Promise((resolve, reject) => {
      let target: URL;
      try {
        target = new URL(url);
      } catch (error) {
        return reject(unreachable(this.url, error));
      }
      const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
      // One connection for the one request (agent: false): nothing is kept open after it.
      const request = send(target, { method, headers: sent, agent: false }, (incoming) => {
        const names = new Headers();
        for (let i = 0; i + 1 < incoming.rawHeaders.length; i += 2) names.append(incoming.rawHeaders[i]!, incoming.rawHeaders[i + 1]!);
        resolve({
          status: incoming.statusCode ?? 0,
          statusText: incoming.statusMessage ?? '',
          url,
          headers: names,
          rawHeaders: incoming.rawHeaders,
          body: incoming,
        });
      });
      // Before the answer: unreachable. After it, the body's own stream reports the loss (chunksOf).
      request.on('error', (error) => reject(unreachable(this.url, error)));
      request.end(body);
    });
  }

  /** A JSON answer from `path`; an error status throws its gateway error. */
  async json<T>(path: string, options: CallOptions = {}): Promise<T> {
    const response = await this.fetch(path, { ...options, headers: { accept: 'application/json', ...options.headers } });
    const text = await this.text(response);
    if (!response.ok) throw this.errorOf(response, text);
    try {
      return JSON.parse(text) as T;
    } catch (error) {
      throw new CliError('BAD_ANSWER', `${path} answered ${response.status} with something that is not JSON: ${text.slice(0, 200)}`, { cause: error });
    }
  }

  /** A fetch response's whole body as text; CONNECTION_LOST when the connection breaks before its end. */
  async text(response: Response): Promise<string> {
    try {
      return await response.text();
    } catch (error) {
      if ((error as Error).name === 'AbortError') throw error;
      throw connectionLost(this.url, error);
    }
  }

  /**
   * The error an error response stands for: its JSON error, or its status when it has none (the code
   * of its x-fnix-error header, when it has that).
   */
  errorOf(response: ResponseHead, text: string): CliError {
    const invocationId = response.headers.get(INVOCATION_ID_HEADER) ?? undefined;
    const parsed = parseGatewayError(text);
    if (!parsed) {
      const marked = response.headers.get(ERROR_HEADER);
      const code = marked && /^[A-Z][A-Z0-9_]*$/.test(marked) ? marked : response.status === 401 ? 'UNAUTHORIZED' : `HTTP_${response.status}`;
      return new CliError(code, `${response.url} answered ${response.status} ${response.statusText}${text ? `: ${text.slice(0, 200)}` : ''}`, {
        status: response.status,
        invocationId,
      });
    }
    return new CliError(parsed.code, parsed.message, {
      status: response.status,
      invocationId: invocationId ?? (typeof parsed.details['invocationId'] === 'string' ? parsed.details['invocationId'] : undefined),
      details: parsed.details,
      hint: hintFor(parsed.code, this.#settings),
    });
  }
}

/** What to do about an error, where the CLI knows better than the gateway. */
function hintFor(code: string, settings: Settings): string | undefined {
  if (code === 'UNAUTHORIZED') {
    if (!settings.token) return `no token for ${settings.url}: set FNIX_TOKEN or run \`fnix login\``;
    if (settings.tokenSource === 'FNIX_TOKEN') return `FNIX_TOKEN is not the deploy token of ${settings.url}`;
    if (settings.tokenSource === 'credentials')
      return `the token saved by fnix login (${settings.credentialsPath}) is not ${settings.url}'s; run \`fnix login\` again`;
    return `that is not the deploy token of ${settings.url}`;
  }
  if (code === 'KEY_REQUIRED') return 'the function is private: pass an invoke key with --key or FNIX_KEY (fnix key create)';
  if (code === 'KEY_INVALID') return 'the key is wrong, revoked, or for another function (fnix key ls)';
  return undefined;
}

/** GATEWAY_UNREACHABLE for `url`, naming the cause (ECONNREFUSED, ENOTFOUND, ...) and the fix. */
export function unreachable(url: string, error: unknown): CliError {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  const why = cause?.code ?? cause?.message ?? (error as Error).message;
  return new CliError('GATEWAY_UNREACHABLE', `cannot reach the fnix gateway at ${url} (${why})`, {
    hint: 'is it running (npm start)? Point the CLI at it with FNIX_URL=http://host:port (or --url)',
    cause: error,
  });
}

/**
 * CONNECTION_LOST for `url`: the answer had begun, and the connection broke before its end (the gateway
 * stopped or restarted, the network went). Exits 3, as an unreachable gateway does (exitCodeOf).
 */
export function connectionLost(url: string, error: unknown): CliError {
  const cause = (error as { cause?: { code?: string; message?: string }; code?: string }).cause;
  const why = cause?.code ?? (error as { code?: string }).code ?? cause?.message ?? (error as Error).message;
  return new CliError('CONNECTION_LOST', `the connection to ${url} was lost before the answer ended${why ? ` (${why})` : ''}`, {
    hint: 'the gateway stopped or restarted, or the network went; run the command again once it is back (fnix status)',
    cause: error,
  });
}

function hasHeader(headers: Record<string, string>, name: string): boolean {
  return Object.keys(headers).some((key) => key.toLowerCase() === name);
}

/** Bytes as a fetch body (Node's Buffer is one; the DOM's types do not say so). */
export function bodyOf(bytes: Uint8Array | undefined): BodyInit | undefined {
  return bytes as unknown as BodyInit | undefined;
}

/**
 * The chunks of a response body (fetch's or node:http's), as they come; CONNECTION_LOST, naming `url`,
 * when the connection breaks before the body's end.
 */
export async function* chunksOf(body: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>, url: string): AsyncGenerator<Uint8Array> {
  const iterator = Symbol.asyncIterator in body ? body[Symbol.asyncIterator]() : readerIterator(body);
  try {
    for (;;) {
      let next: IteratorResult<Uint8Array>;
      try {
        next = await iterator.next();
      } catch (error) {
        if ((error as Error).name === 'AbortError') throw error;
        throw connectionLost(url, error);
      }
      if (next.done) return;
      yield next.value;
    }
  } finally {
    await iterator.return?.();
  }
}

/** A ReadableStream's reader as an iterator (the DOM's types do not say that Node's streams are iterable). */
function readerIterator(body: ReadableStream<Uint8Array>): AsyncIterator<Uint8Array> {
  const reader = body.getReader();
  return {
    next: () => reader.read() as Promise<IteratorResult<Uint8Array>>,
    return: async () => {
      reader.releaseLock();
      return { done: true, value: undefined };
    },
  };
}
