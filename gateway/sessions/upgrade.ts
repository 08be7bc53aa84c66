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
import type { Invocation } from '../../runtime/invocation/invocation.ts';
import type { Runner } from '../../runtime/runner.ts';
import { buildCgiEnv } from '../cgi/env.ts';
import { rawErrorResponse, toFnixError } from '../errors.ts';
import type { HostAllowlist } from '../host-check.ts';
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
  /** The Host names requests may carry (gateway/host-check.ts). */
  hosts: HostAllowlist;
  /** How often sessions ping their clients. @default 15000 */
  heartbeatMs?: number;
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
  // No compression (output is often already compact, and inflating is work a client could abuse); text
  // frames are refused by the protocol whatever they hold, so ws need not check their UTF-8.
  const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxPayload, perMessageDeflate: false, skipUTF8Validation: true });
  const sessions = new Set<Session>();
  // The 101 response carries the invocation id, as every HTTP response does.
  const invocationIds = new WeakMap<IncomingMessage, string>();
  wss.on('headers', (headers, request) => {
    const id = invocationIds.get(request);
    if (id) headers.push(`${INVOCATION_ID_HEADER}: ${id}`);
  });
  // Sessions being opened or open, counted from before the container is found until the command ends.
  let reserved = 0;

  let closing = false;

  async function handle(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => {});
    options.hosts.check(request.headers.host);
    const url = requestUrl(request);
    const match = /^\/sessions\/([^/]*)$/.exec(url.pathname);
    if (!match) throw new FnixError('ROUTE_NOT_FOUND', `no WebSocket route for ${url.pathname}; sessions are at /sessions/<name>`);
    checkHandshake(request);
    checkOrigin(request);
    const fn = registry.get(safeDecode(match[1]!));
    let tty: { cols: number; rows: number } | undefined;
    try {
      if (closing || options.isShuttingDown()) throw new FnixError('SHUTTING_DOWN', 'fnix is shutting down and accepts no new sessions');
      tty = readTty(url.searchParams);
      if (reserved >= options.maxSessions) {
        throw new FnixError('NO_CAPACITY', `${options.maxSessions} sessions are open, which is FNIX_MAX_SESSIONS; retry later, or raise it`, {
          details: { maxSessions: options.maxSessions },
        });
      }
    } catch (error) {
      if (error instanceof FnixError) metrics.invocationRefused(fn.name, 'session', error.code, 0);
      throw error;
    }
    const id = nanoid();
    // The client may leave while a container is found: a FIN ('end': upgrade sockets stay half-open)
    // or a reset ('close') cancels the wait, or kills the command if it has started.
    const left = new AbortController();
    const leave = () => left.abort();
    socket.once('end', leave).once('close', leave);
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
    let invocation: Invocation;
    try {
      ({ invocation } = await runner.invoke({ fn, id, env, tty, timeoutMs: fn.manifest.sessionTimeoutMs, signal: left.signal }));
    } catch (error) {
      reserved--;
      throw error;
    }
    void invocation.done.then(() => reserved--);
    if (left.signal.aborted) return; // the signal has killed the command
    if (closing) {
      invocation.kill('shutdown');
      throw new FnixError('SHUTTING_DOWN', 'fnix is shutting down and accepts no new sessions');
    }
    socket.off('end', leave); // from here the session owns the socket, and sees its close
    invocationIds.set(request, id);
    try {
      wss.handleUpgrade(request, socket, head, (ws) => {
        metrics.sessionOpened();
        const session = runSession({
          ws,
          invocation,
          tty: tty !== undefined,
          heartbeatMs: options.heartbeatMs,
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
    } catch (error) {
      invocation.kill('aborted');
      throw error;
    }
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
      closing = true; // sessions still finding a container are refused when they find one
      const open = [...sessions];
      for (const session of open) session.shutdown();
      await Promise.allSettled(open.map((s) => s.ended));
    },
  };
}

/** The request's URL, with the host the client asked for (SERVER_NAME comes from it, as over HTTP). */
function requestUrl(request: IncomingMessage): URL {
  try {
    return new URL(request.url ?? '/', `http://${request.headers.host ?? 'localhost'}`);
  } catch {
    return new URL(request.url ?? '/', 'http://localhost');
  }
}

/**
 * Refuses what is not a WebSocket handshake (another protocol's upgrade, a missing key, an old version)
 * before a container is found for it; ws would refuse it only after.
 */
function checkHandshake(request: IncomingMessage): void {
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
 * Refuses a cross-site session: a browser sends the Origin of the page that opens a WebSocket, and any
 * web page could otherwise open a shell on a gateway its visitor can reach. Clients that are not
 * browsers send no Origin and are not concerned.
 */
function checkOrigin(request: IncomingMessage): void {
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
export function rejectUpgrade(socket: Duplex, error: FnixError): void {
  if (socket.destroyed) return;
  // Server sockets are half-open: end() alone would leave this one waiting for the client to close it.
  socket.once('finish', () => socket.destroy());
  socket.end(rawErrorResponse(error));
}
