/**
 * @module
 * `GET /sessions/<name>` with a WebSocket upgrade. The function and a container are settled before the
 * handshake, so an unknown function is a plain 404 and no capacity a 503, with the core's JSON errors;
 * only then does the socket become a session.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { nanoid } from 'nanoid';
import { WebSocketServer } from 'ws';
import { FnixError } from '../../runtime/errors.ts';
import type { FunctionRegistry } from '../../runtime/functions/registry.ts';
import type { Logger } from '../../runtime/log.ts';
import type { Runner } from '../../runtime/runner.ts';
import { buildCgiEnv } from '../cgi/env.ts';
import { STATUS_BY_CODE, toFnixError } from '../errors.ts';
import type { GatewayMetrics } from '../metrics/metrics.ts';
import { INVOCATION_ID_HEADER } from '../routes/invoke.ts';
import { MAX_TERMINAL_SIZE } from './protocol.ts';
import { runSession, type Session } from './session.ts';

/** What the upgrade handler needs. */
export interface SessionUpgradeOptions {
  registry: FunctionRegistry;
  /** A runner that counts its invocations as sessions. */
  runner: Runner;
  log: Logger;
  metrics: GatewayMetrics;
  /** The largest frame a client may send; larger ones close the session with 1009. */
  maxPayload: number;
  /** Sessions open (or being opened) at once; more are refused with 503 NO_CAPACITY. */
  maxSessions: number;
  /** True once shutdown has begun: new sessions are refused. */
  isShuttingDown: () => boolean;
}

/** The upgrade handler, and the open sessions (for shutdown). */
export interface SessionUpgrade {
  handle(request: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Ends every open session (status SHUTTING_DOWN, close 1001) and resolves when they have ended. */
  closeAll(): Promise<void>;
}

/** Creates the handler for WebSocket upgrades on /sessions/<name>. */
export function createSessionUpgrade(options: SessionUpgradeOptions): SessionUpgrade {
  const { registry, runner, log, metrics } = options;
  const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxPayload, perMessageDeflate: false });
  const sessions = new Set<Session>();
  // The 101 response carries the invocation id, as every HTTP response does.
  const invocationIds = new WeakMap<IncomingMessage, string>();
  wss.on('headers', (headers, request) => {
    const id = invocationIds.get(request);
    if (id) headers.push(`${INVOCATION_ID_HEADER}: ${id}`);
  });
  // Sessions being opened or open, counted from before the container is found until the command ends.
  let reserved = 0;

  async function handle(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => {});
    const url = new URL(request.url ?? '/', 'http://fnix');
    const match = /^\/sessions\/([^/]*)$/.exec(url.pathname);
    if (!match) throw new FnixError('ROUTE_NOT_FOUND', `no WebSocket route for ${url.pathname}; sessions are at /sessions/<name>`);
    checkOrigin(request);
    if (options.isShuttingDown()) throw new FnixError('SHUTTING_DOWN', 'fnix is shutting down and accepts no new sessions');
    const fn = registry.get(safeDecode(match[1]!));
    const tty = readTty(url.searchParams);
    if (reserved >= options.maxSessions) {
      throw new FnixError('NO_CAPACITY', `${options.maxSessions} sessions are open, which is FNIX_MAX_SESSIONS; retry later, or raise it`, {
        details: { maxSessions: options.maxSessions },
      });
    }
    const id = nanoid();
    const closed = new AbortController();
    socket.once('close', () => closed.abort());
    const socketAddress = socket as unknown as { localPort?: number; remoteAddress?: string; remotePort?: number };
    const env = {
      ...buildCgiEnv({
        method: 'GET',
        pathInfo: '',
        query: url.search.slice(1),
        scriptName: `/sessions/${fn.name}`,
        headers: toHeaders(request),
        requestUri: request.url ?? url.pathname,
        serverName: url.hostname,
        serverPort: String(socketAddress.localPort ?? ''),
        remoteAddr: socketAddress.remoteAddress ?? '',
        remotePort: String(socketAddress.remotePort ?? ''),
      }),
      FNIX_SESSION: '1',
      ...(tty ? { TERM: 'xterm-256color' } : {}),
    };
    reserved++;
    let invocation;
    try {
      ({ invocation } = await runner.invoke({ fn, id, env, tty, timeoutMs: fn.manifest.sessionTimeoutMs, signal: closed.signal }));
    } catch (error) {
      reserved--;
      throw error;
    }
    void invocation.done.then(() => reserved--);
    if (closed.signal.aborted) return; // the client left while a container was found; the signal killed it
    invocationIds.set(request, id);
    wss.handleUpgrade(request, socket, head, (ws) => {
      metrics.sessionOpened();
      const session = runSession({
        ws,
        invocation,
        tty: tty !== undefined,
        idleTimeoutMs: fn.manifest.idleTimeoutMs,
        sessionTimeoutMs: fn.manifest.sessionTimeoutMs,
        // Counted under the session's own codes (SESSION_IDLE, SESSION_TIMEOUT...), not the invocation's.
        onStatus: (status) => {
          if ('error' in status) metrics.overrideOutcome(invocation, status.error.code);
        },
      });
      sessions.add(session);
      log.info('session started', { function: fn.name, id, tty: tty ? `${tty.cols}x${tty.rows}` : 'no' });
      void session.ended.then((status) => {
        sessions.delete(session);
        metrics.sessionClosed();
        log.info('session ended', { function: fn.name, id, status: JSON.stringify(status) });
      });
    });
  }

  return {
    handle(request, socket, head) {
      handle(request, socket, head).catch((error: unknown) => {
        const fnixError = toFnixError(error);
        if (fnixError.code === 'INTERNAL_ERROR') log.error('session upgrade failed', { error: String(error), stack: (error as Error).stack });
        rejectUpgrade(socket, fnixError);
      });
    },
    async closeAll() {
      const open = [...sessions];
      for (const session of open) session.shutdown();
      await Promise.allSettled(open.map((s) => s.ended));
    },
  };
}

/**
 * Refuses a cross-site session: a browser sends the Origin of the page that opens a WebSocket, and any
 * web page could otherwise open a shell on a gateway its visitor can reach. Clients that are not
 * browsers send no Origin and are not concerned.
 */
function checkOrigin(request: IncomingMessage): void {
  const origin = request.headers.origin;
  if (origin === undefined) return;
  let originHost: string;
  try {
    originHost = new URL(origin).host;
  } catch {
    originHost = '';
  }
  const forwarded = request.headers['x-forwarded-host'];
  const hosts = [request.headers.host, ...(typeof forwarded === 'string' ? forwarded.split(',').map((h) => h.trim()) : [])];
  if (originHost === '' || !hosts.includes(originHost)) {
    throw new FnixError('ORIGIN_NOT_ALLOWED', `a page from ${origin} may not open sessions here: only pages served by this gateway may`, {
      details: { origin },
    });
  }
}

/** `?tty=1&cols=80&rows=24`: the terminal size, or undefined without tty. */
function readTty(params: URLSearchParams): { cols: number; rows: number } | undefined {
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

function safeDecode(name: string): string {
  try {
    return decodeURIComponent(name);
  } catch {
    return name; // the registry refuses it as an invalid name
  }
}

function toHeaders(request: IncomingMessage): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(request.headers)) {
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
  }
  return headers;
}

/** Answers the upgrade request with the core's JSON error, and closes the socket. */
function rejectUpgrade(socket: Duplex, error: FnixError): void {
  if (socket.destroyed) return;
  const status = STATUS_BY_CODE[error.code];
  const body = JSON.stringify({ error: error.toJSON() });
  const lines = [
    `HTTP/1.1 ${status} ${error.code}`,
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    ...(status === 503 ? ['Retry-After: 1'] : []),
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
}
