/**
 * @module
 * The one place where runtime errors become HTTP responses: a status per error code, and the JSON body
 * `{"error":{"code":"…","message":"…", …details}}`.
 */
import { STATUS_CODES } from 'node:http';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { FnixError, type ErrorCode } from '../runtime/errors.ts';

/** The HTTP status of each error code. The README's error table lists the same. */
export const STATUS_BY_CODE: Record<ErrorCode, ContentfulStatusCode> = {
  FUNCTION_NAME_INVALID: 400,
  FUNCTION_NOT_FOUND: 404,
  FUNCTION_UNAVAILABLE: 503,
  MANIFEST_INVALID: 400,
  COMMAND_NOT_FOUND: 400,
  PACKAGE_SET_INVALID: 500,
  PACKAGES_NIX_INVALID: 400,
  PACKAGE_NOT_FOUND: 400,
  PACKAGE_BUILD_FAILED: 500,
  FUNCTION_BUILD_FAILED: 500,
  BODY_TOO_LARGE: 413,
  FUNCTION_FAILED: 502,
  FUNCTION_TIMEOUT: 504,
  FUNCTION_OOM: 502,
  FUNCTION_BAD_RESPONSE: 502,
  SERVER_NOT_READY: 502,
  SERVER_EXITED: 502,
  OUTPUT_LIMIT: 502,
  INVOCATION_ABORTED: 499 as ContentfulStatusCode,
  NO_CAPACITY: 503,
  CONTAINER_START_FAILED: 503,
  CONTAINER_LOST: 502,
  SHUTTING_DOWN: 503,
  RUNTIME_UNAVAILABLE: 503,
  SESSION_PROTOCOL_ERROR: 400,
  SESSION_IDLE: 408,
  SESSION_TIMEOUT: 408,
  ORIGIN_NOT_ALLOWED: 403,
  HOST_NOT_ALLOWED: 403,
  UNAUTHORIZED: 401,
  DEPLOYMENT_NOT_FOUND: 404,
  DEPLOYMENT_REFUSED: 409,
  DEPLOY_IN_PROGRESS: 409,
  DEPLOY_CONFLICT: 409,
  CLUSTER_UNAVAILABLE: 503,
  STORE_UNAVAILABLE: 503,
  ROUTE_NOT_FOUND: 404,
  BAD_REQUEST: 400,
  REQUEST_HEADERS_TOO_LARGE: 431,
  REQUEST_TIMEOUT: 408,
  EXPECTATION_FAILED: 417,
  AUTH_RATE_LIMITED: 429,
  INVOCATION_NOT_FOUND: 404,
  SECRET_INVALID: 400,
  SECRET_NOT_FOUND: 404,
  SECRET_IN_USE: 409,
  SECRET_MISSING: 503,
  SECRETS_KEY_INVALID: 500,
  KEY_REQUIRED: 401,
  KEY_INVALID: 401,
  KEY_NOT_FOUND: 404,
  INTERNAL_ERROR: 500,
};

/** The header on every error response of the gateway's own, whose value is the error code. */
export const ERROR_HEADER = 'x-fnix-error';

/** Turns any error into a FnixError; unexpected ones become INTERNAL_ERROR without their details. */
export function toFnixError(error: unknown): FnixError {
  if (error instanceof FnixError) return error;
  return new FnixError('INTERNAL_ERROR', 'internal error; the gateway log has the details', { cause: error });
}

/** An error response's parts: its status, its headers (the content type and x-fnix-error included) and its JSON body. */
export function errorParts(error: FnixError): { status: number; headers: Record<string, string>; body: string } {
  const status = STATUS_BY_CODE[error.code];
  const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8' };
  if (status === 503) headers['retry-after'] = '1';
  // A refusal for too many failed attempts says when to try again.
  if (status === 429) headers['retry-after'] = String(error.details['retryAfterSeconds'] ?? 60);
  // A 401 names the scheme to answer with: git sends its credentials once it is challenged for Basic.
  if (error.code === 'UNAUTHORIZED') {
    headers['www-authenticate'] = error.details['scheme'] === 'Bearer' ? 'Bearer realm="fnix"' : 'Basic realm="fnix", charset="UTF-8"';
  }
  // A private function's refusal names the scheme its invoke key is sent with.
  if (error.code === 'KEY_REQUIRED' || error.code === 'KEY_INVALID') headers['www-authenticate'] = 'Bearer realm="fnix"';
  // x-fnix-error marks the answer as the gateway's own (docs/http.md): what tells it from a function's
  // answer, which may have any status and any body. Set last, so that the raw answer's header order
  // (insertion) is the sorted one a Response gives.
  headers[ERROR_HEADER] = error.code;
  return { status, headers, body: JSON.stringify({ error: error.toJSON() }) };
}

/**
 * The JSON error response for `error`. Its status text is the error code, which HTTP responses do not
 * show (@hono/node-server writes the status alone) and a raw answer ({@link rawResponse}) does.
 */
export function errorResponse(error: FnixError, headers: Record<string, string> = {}): Response {
  const parts = errorParts(error);
  return new Response(parts.body, { status: parts.status, statusText: error.code, headers: { ...parts.headers, ...headers } });
}

/**
 * A response as raw HTTP/1.1 bytes, closing the connection: for a socket that no response object is
 * attached to (a refused WebSocket upgrade). The status line's reason is the response's status text
 * (the error code, for {@link errorResponse}'s), else the standard one.
 */
export async function rawResponse(response: Response): Promise<Buffer> {
  const body = Buffer.from(await response.arrayBuffer());
  const head = rawHead({
    status: response.status,
    reason: response.statusText || STATUS_CODES[response.status] || '',
    headers: response.headers,
    length: body.length,
  });
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

/** The same response as {@link errorResponse}'s, as raw HTTP/1.1 (for a request Node's parser refused). */
export function rawErrorResponse(error: FnixError): string {
  const { status, headers, body } = errorParts(error);
  return rawHead({ status, reason: error.code, headers: Object.entries(headers), length: Buffer.byteLength(body) }) + body;
}

/** Headers a raw answer sets itself: its own length, and the end of the connection. */
const RAW_OWN_HEADERS = new Set(['content-length', 'connection', 'transfer-encoding', 'keep-alive']);

/** The status line and headers of a raw answer, its own Content-Length and `Connection: close` last. */
function rawHead({ status, reason, headers, length }: { status: number; reason: string; headers: Iterable<[string, string]>; length: number }): string {
  const lines = [`HTTP/1.1 ${status} ${reason}`];
  for (const [name, value] of headers) if (!RAW_OWN_HEADERS.has(name.toLowerCase())) lines.push(`${name}: ${value}`);
  lines.push(`content-length: ${length}`, 'connection: close');
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** BODY_TOO_LARGE for a request body over FNIX_MAX_BODY. */
export function bodyTooLarge(maxBody: number): FnixError {
  return new FnixError('BODY_TOO_LARGE', `the request body exceeds FNIX_MAX_BODY (${maxBody} bytes)`, { details: { maxBody } });
}
