/**
 * @module
 * What a session's upgrade request must be before a container is found for it: a WebSocket handshake,
 * from no other site's page, with a terminal size fnix takes. Each check throws the FnixError that
 * answers it.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { FnixError } from '../../runtime/errors.ts';
import { MAX_TERMINAL_SIZE } from './protocol.ts';

/** The parts of an upgrade request the checks read. */
export interface HandshakeRequest {
  method?: string | undefined;
  headers: IncomingHttpHeaders;
}

/**
 * Refuses what is not a WebSocket handshake (another protocol's upgrade, a missing key, an old version)
 * with SESSION_PROTOCOL_ERROR, before a container is found for it; ws would refuse it only after.
 */
export function checkHandshake(request: HandshakeRequest): void {
  const upgrade = request.headers.upgrade?.toLowerCase();
  const key = request.headers['sec-websocket-key'];
  const version = request.headers['sec-websocket-version'];
  if (request.method !== 'GET' || upgrade !== 'websocket' || !key || !/^[+/0-9A-Za-z]{22}==$/.test(key) || (version !== '13' && version !== '8')) {
    throw new FnixError(
      'SESSION_PROTOCOL_ERROR',
      'not a WebSocket handshake (GET, with Upgrade: websocket, a Sec-WebSocket-Key and Sec-WebSocket-Version: 13, is required)',
    );
  }
}

/**
 * Refuses a cross-site session with ORIGIN_NOT_ALLOWED: a browser sends the Origin of the page that
 * opens a WebSocket, and any web page could otherwise open a shell on a gateway its visitor can reach.
 * Clients that are not browsers send no Origin and are not concerned.
 */
export function checkOrigin(request: HandshakeRequest): void {
  const origin = request.headers.origin;
  if (origin === undefined) return;
  let originHost: string;
  try {
    originHost = new URL(origin).host; // lower-cased by URL
  } catch {
    originHost = '';
  }
  const forwarded = request.headers['x-forwarded-host'];
  const hosts = [request.headers.host, ...(typeof forwarded === 'string' ? forwarded.split(',') : [])].map((h) => h?.trim().toLowerCase());
  if (originHost === '' || !hosts.includes(originHost)) {
    throw new FnixError('ORIGIN_NOT_ALLOWED', `a page from ${origin} may not open sessions here: only pages served by this gateway may`, {
      details: { origin },
    });
  }
}

/** `?tty=1&cols=80&rows=24`: the terminal size, or undefined without tty; SESSION_PROTOCOL_ERROR for a bad size. */
export function readTty(params: URLSearchParams): { cols: number; rows: number } | undefined {
  const tty = params.get('tty');
  if (tty === null || tty === '0' || tty === 'false') return undefined;
  const read = (name: string, fallback: number) => {
    const raw = params.get(name);
    if (raw === null) return fallback;
    const value = Number(raw);
    if (!/^\d+$/.test(raw) || value < 1 || value > MAX_TERMINAL_SIZE) {
      throw new FnixError('SESSION_PROTOCOL_ERROR', `${name}=${JSON.stringify(raw)}: expected an integer from 1 to ${MAX_TERMINAL_SIZE}`);
    }
    return value;
  };
  return { cols: read('cols', 80), rows: read('rows', 24) };
}
