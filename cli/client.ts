/**
 * @module
 * The gateway's HTTP API as the CLI calls it, through fetch: the deploy token on /api routes, a gateway
 * error turned into a {@link CliError} with its code and message, and a gateway that cannot be reached
 * named with its URL and how to point the CLI elsewhere.
 */
import { CliError, parseGatewayError } from './errors.ts';
import type { Settings } from './settings.ts';

/** The header that names an invocation. */
export const INVOCATION_ID_HEADER = 'x-fnix-invocation-id';

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

  /** A JSON answer from `path`; an error status throws its gateway error. */
  async json<T>(path: string, options: CallOptions = {}): Promise<T> {
    const response = await this.fetch(path, { ...options, headers: { accept: 'application/json', ...options.headers } });
    const text = await response.text();
    if (!response.ok) throw this.errorOf(response, text);
    try {
      return JSON.parse(text) as T;
    } catch (error) {
      throw new CliError('BAD_ANSWER', `${path} answered ${response.status} with something that is not JSON: ${text.slice(0, 200)}`, { cause: error });
    }
  }

  /** The error an error response stands for: its JSON error, or its status when it has none. */
  errorOf(response: Response, text: string): CliError {
    const invocationId = response.headers.get(INVOCATION_ID_HEADER) ?? undefined;
    const parsed = parseGatewayError(text);
    if (!parsed) {
      const code = response.status === 401 ? 'UNAUTHORIZED' : `HTTP_${response.status}`;
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

function hasHeader(headers: Record<string, string>, name: string): boolean {
  return Object.keys(headers).some((key) => key.toLowerCase() === name);
}

/** Bytes as a fetch body (Node's Buffer is one; the DOM's types do not say so). */
export function bodyOf(bytes: Uint8Array | undefined): BodyInit | undefined {
  return bytes as unknown as BodyInit | undefined;
}

/** The chunks of a response body, as they come. */
export async function* chunksOf(body: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}
