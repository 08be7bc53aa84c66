/**
 * @module
 * The headers a reverse proxy passes on, as RFC 9110 section 7.6.1 has it: hop-by-hop headers (and
 * every header the Connection header names) are dropped in both directions; the request gains the
 * forwarding headers (`X-Forwarded-For`, appended to; `X-Forwarded-Proto` and `X-Forwarded-Host`, set)
 * and `X-Fnix-Invocation-Id`, set by fnix whatever the client sent. The invoke key that let the request
 * in is not passed on: X-Fnix-Key never, Authorization when it is `Bearer fnixk_...`, and the
 * `fnix.key.<key>` entries of Sec-WebSocket-Protocol (gateway/auth/keys/key-text.ts).
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { isKeyAuthorization, KEY_HEADER, withoutKeyProtocols } from '../auth/keys/key-text.ts';

/** Hop-by-hop headers, and those meant for a proxy; `expect` is the gateway's to answer. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
]);
/** Set by fnix on the request, whatever the client sent. */
const SET_BY_FNIX = new Set(['x-forwarded-proto', 'x-forwarded-host', 'x-fnix-invocation-id']);

/** The names a Connection header lists, lower-cased. */
function connectionListed(value: string | string[] | undefined): Set<string> {
  const listed = new Set<string>();
  for (const part of ([] as string[]).concat(value ?? [])) for (const name of part.split(',')) if (name.trim()) listed.add(name.trim().toLowerCase());
  return listed;
}

/** What the request headers are built from. */
export interface ForwardedFrom {
  incoming: IncomingMessage;
  invocationId: string;
  /** Keep Upgrade and `Connection: upgrade` (a WebSocket handshake passed through). */
  upgrade?: boolean;
}

/**
 * The headers to send the function's server, as a flat `[name, value, ...]` list in the client's
 * order and spelling (repeated headers stay repeated).
 */
export function requestHeaders({ incoming, invocationId, upgrade = false }: ForwardedFrom): string[] {
  const raw = incoming.rawHeaders;
  const listed = connectionListed(incoming.headers.connection);
  const out: string[] = [];
  let forwardedFor: string | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (lower === 'x-forwarded-for') {
      forwardedFor = forwardedFor === undefined ? raw[i + 1]! : `${forwardedFor}, ${raw[i + 1]!}`;
      continue;
    }
    if (upgrade && lower === 'upgrade') {
      out.push(name, raw[i + 1]!);
      continue;
    }
    if (HOP_BY_HOP.has(lower) || listed.has(lower) || SET_BY_FNIX.has(lower)) continue;
    if (lower === KEY_HEADER || (lower === 'authorization' && isKeyAuthorization(raw[i + 1]!))) continue;
    if (lower === 'sec-websocket-protocol') {
      const kept = withoutKeyProtocols(raw[i + 1]!);
      if (kept !== undefined) out.push(name, kept);
      continue;
    }
    out.push(name, raw[i + 1]!);
  }
  if (upgrade) out.push('Connection', 'Upgrade');
  const client = incoming.socket.remoteAddress ?? '';
  out.push('X-Forwarded-For', forwardedFor ? `${forwardedFor}, ${client}` : client);
  out.push('X-Forwarded-Proto', (incoming.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http');
  if (incoming.headers.host !== undefined) out.push('X-Forwarded-Host', incoming.headers.host);
  out.push('X-Fnix-Invocation-Id', invocationId);
  return out;
}

/** What only the gateway sets on a response: a server's own are dropped (`x-fnix-error` marks the gateway's errors). */
const RESPONSE_SET_BY_FNIX = new Set(['x-fnix-error']);

/** The server's response headers without the hop-by-hop ones and fnix's own, as Node's writeHead takes them. */
export function responseHeaders(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const listed = connectionListed(headers['connection']);
  const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || listed.has(name) || RESPONSE_SET_BY_FNIX.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/**
 * The path and query to ask the server for: what follows `/fn/<name>` in the request's URL, from `/`.
 * The URL is resolved first as the router resolves it (dot segments, an absolute-form target), so that
 * the server is asked for the path that was routed to it.
 */
export function upstreamPath(url: string): string {
  let target = url;
  try {
    const parsed = new URL(url, 'http://fnix.invalid');
    target = parsed.pathname + parsed.search;
  } catch {
    // Not a URL at all: the router did not take it either; the raw form is all there is.
  }
  const rest = target.replace(/^\/fn\/[^/?#]*/, '');
  return rest.startsWith('/') ? rest : `/${rest}`;
}
