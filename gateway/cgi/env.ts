/**
 * @module
 * The CGI/1.1 meta-variables (RFC 3875, section 4.1) of an HTTP request, as a function's environment.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { isKeyAuthorization, KEY_HEADER, withoutKeyProtocols } from '../auth/keys/key-text.ts';

/** What the CGI variables are made from. */
export interface CgiRequest {
  method: string;
  /** The URL path after the function's own, e.g. `/a/b` for `/fn/name/a/b`; may be empty. */
  pathInfo: string;
  /** The query string without `?`, still URL-encoded. */
  query: string;
  /** The function's own path, `/fn/<name>`. */
  scriptName: string;
  /** A fetch Headers, or Node's parsed headers (names in lower case, repeats joined as Node joins them). */
  headers: Headers | IncomingHttpHeaders;
  /** The request URI as received. */
  requestUri: string;
  serverName: string;
  serverPort: string;
  remoteAddr: string;
  remotePort: string;
}

/**
 * Builds the environment. Every header becomes HTTP_<NAME> except:
 * - Content-Type and Content-Length, which are CONTENT_TYPE and CONTENT_LENGTH;
 * - Proxy, which would become HTTP_PROXY and redirect the function's HTTP clients (httpoxy);
 * - names with characters other than letters, digits and `-` (an underscore would let
 *   `X_Forwarded_For` pose as `X-Forwarded-For`);
 * - an invoke key (gateway/auth/keys/key-text.ts): X-Fnix-Key always, Authorization when it is
 *   `Bearer fnixk_...`, and the `fnix.key.<key>` entries of Sec-WebSocket-Protocol. A function never
 *   sees the key that let its request in.
 */
export function buildCgiEnv(request: CgiRequest): Record<string, string> {
  const env: Record<string, string> = {
    GATEWAY_INTERFACE: 'CGI/1.1',
    SERVER_SOFTWARE: 'fnix',
    SERVER_PROTOCOL: 'HTTP/1.1',
    SERVER_NAME: request.serverName,
    SERVER_PORT: request.serverPort,
    REQUEST_METHOD: request.method,
    REQUEST_URI: request.requestUri,
    SCRIPT_NAME: request.scriptName,
    PATH_INFO: decodePath(request.pathInfo),
    QUERY_STRING: request.query,
    REMOTE_ADDR: request.remoteAddr,
    REMOTE_PORT: request.remotePort,
  };
  const add = (raw: string, name: string) => {
    const value = name === 'sec-websocket-protocol' ? withoutKeyProtocols(raw) : raw;
    if (value === undefined || name === KEY_HEADER || (name === 'authorization' && isKeyAuthorization(value))) return;
    if (name === 'content-type') env['CONTENT_TYPE'] = value;
    else if (name === 'content-length') env['CONTENT_LENGTH'] = value;
    else if (name !== 'proxy' && HEADER_NAME.test(name)) env[`HTTP_${name.toUpperCase().replaceAll('-', '_')}`] = value;
  };
  const { headers } = request;
  if (headers instanceof Headers) headers.forEach(add);
  else {
    for (const name in headers) {
      const value = headers[name];
      // Node keeps repeated Set-Cookie apart; a request has none that matter, but join them as Headers would.
      if (value !== undefined) add(typeof value === 'string' ? value : value.join(', '), name);
    }
  }
  return env;
}

const HEADER_NAME = /^[a-z0-9-]+$/;

/** PATH_INFO is decoded (RFC 3875, 4.1.5); a path that does not decode cleanly is passed as received. */
function decodePath(path: string): string {
  try {
    const decoded = decodeURIComponent(path);
    return decoded.includes('\0') ? path : decoded;
  } catch {
    return path;
  }
}
