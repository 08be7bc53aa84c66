/**
 * @module
 * `GET /sessions/<name>` with a WebSocket upgrade: the route that takes it (through the app, see
 * upgrade.ts), and the set of open sessions. The function and a container are settled before the
 * handshake, so an unknown function is a plain 404 and no capacity a 503, with the core's JSON errors;
 * only then does the socket become a session (session.ts).
 */
import type { IncomingMessage } from 'node:http';
import { nanoid } from 'nanoid';
import { type WebSocket, WebSocketServer } from 'ws';
import { FnixError } from '../../runtime/errors.ts';
import type { FunctionRegistry } from '../../runtime/functions/registry.ts';
import type { Invocation } from '../../runtime/invocation/invocation.ts';
import type { Logger } from '../../runtime/log.ts';
import type { Recorder } from '../../runtime/records/recorder.ts';
import type { Runner } from '../../runtime/runner.ts';
import { type KeyGuard, revokedKeyError } from '../auth/keys/guard.ts';
import { KEY_PROTOCOL_PREFIX } from '../auth/keys/key-text.ts';
import { buildCgiEnv } from '../cgi/env.ts';
import type { GatewayMetrics } from '../metrics/metrics.ts';
import { INVOCATION_ID_HEADER } from '../routes/invoke.ts';
import { checkHandshake, checkOrigin, readTty } from './handshake.ts';
import { runSession, type Session } from './session.ts';
import { type UpgradeHandler, upgradeTaken } from '../upgrade.ts';

/** The path of the route that takes session upgrades. An empty name is the function's 404, as any unknown name. */
export const SESSION_ROUTE = '/sessions/:name{[^/]*}';

/** What the sessions need. */
export interface SessionsOptions {
  registry: FunctionRegistry;
  /** A runner that counts its invocations as sessions. */
  runner: Runner;
  log: Logger;
  metrics: GatewayMetrics;
  /** A cluster node's name, which the 101 response carries as every answer does (x-fnix-node). @default none */
  node?: string | undefined;
  /** The largest frame a client may send; larger ones close the session with 1009. */
  maxPayload: number;
  /** Sessions open (or being opened) at once; more are refused with 503 NO_CAPACITY. */
  maxSessions: number;
  /** How often sessions ping their clients. @default 15000 */
  heartbeatMs?: number | undefined;
  /** True once shutdown has begun: new sessions are refused. */
  isShuttingDown: () => boolean;
  /**
   * Refuses sessions of private functions without a key that opens them, and ends those whose key is
   * revoked (gateway/auth/keys/guard.ts).
   */
  keys: Pick<KeyGuard, 'check' | 'hold'>;
  /**
   * Keeps the sessions' stderr lines, and notes their status (101) and the bytes the client sent; the
   * runner (instrumented with the same recorder) writes their records. @default none
   */
  records?: Recorder | undefined;
}

/** The session route, and the open sessions (for shutdown). */
export interface Sessions {
  /** Takes the upgrade of `GET /sessions/:name` (for takeUpgrades, at {@link SESSION_ROUTE}). */
  open: UpgradeHandler;
  /** Ends every open session (status SHUTTING_DOWN, close 1001) and resolves when they have ended. */
  closeAll(): Promise<void>;
}

/** Creates the session route and the set of sessions it opens. */
export function createSessions(options: SessionsOptions): Sessions {
  const { registry, runner, log, metrics } = options;
  // No compression (output is often already compact, and inflating is work a client could abuse); text
  // frames are refused by the protocol whatever they hold, so ws need not check their UTF-8.
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: options.maxPayload,
    perMessageDeflate: false,
    skipUTF8Validation: true,
    // The first subprotocol offered, as ws picks by default, but never one carrying a key (a browser
    // page sends its key as `fnix.key.<key>`): the 101 response must not echo it.
    handleProtocols: (protocols) => [...protocols].find((protocol) => !protocol.startsWith(KEY_PROTOCOL_PREFIX)) ?? false,
  });
  const sessions = new Set<Session>();
  // The 101 response carries the invocation id, as every HTTP response does.
  const invocationIds = new WeakMap<IncomingMessage, string>();
  wss.on('headers', (headers, request) => {
    const id = invocationIds.get(request);
    if (id) headers.push(`${INVOCATION_ID_HEADER}: ${id}`);
    if (options.node) headers.push(`x-fnix-node: ${options.node}`);
  });
  // Sessions being opened or open, counted from before the container is found until the command ends.
  let reserved = 0;
  let closing = false;

  const open: UpgradeHandler = async (c, { incoming, upgrade }) => {
    checkHandshake(incoming);
    checkOrigin(incoming);
    const url = new URL(c.req.url);
    const fn = registry.get(c.req.param('name') ?? '');
    // Before a container is found and before the function's refusals are counted: no series grows.
    const keyId = options.keys.check({ fn, headers: incoming.headers, address: incoming.socket.remoteAddress ?? '', route: 'session' });
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
      if (error instanceof FnixError) {
        metrics.invocationRefused(fn.name, 'session', error.code, 0);
        options.records?.refused({ fn, kind: 'session', outcome: error.code, startedAt: Date.now(), waitMs: 0 });
      }
      throw error;
    }
    const { socket, head } = upgrade;
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
        headers: c.req.raw.headers,
        requestUri: incoming.url ?? url.pathname,
        serverName: url.hostname,
        serverPort: String(socketAddress.localPort ?? ''),
        remoteAddr: socketAddress.remoteAddress ?? '',
        remotePort: String(socketAddress.remotePort ?? ''),
      }),
      FNIX_SESSION: '1',
      ...(tty ? { TERM: 'xterm-256color' } : {}),
    };
    // The key it came with, revoked: while a container is found, the wait ends (401 KEY_INVALID); once
    // the session runs, the session does (status KEY_INVALID, close 1008).
    let session: Session | undefined;
    const revoked = new AbortController();
    const release =
      keyId === undefined
        ? () => {}
        : options.keys.hold(keyId, () => {
            const error = revokedKeyError(fn.name, keyId);
            if (session) session.stop(error, 1008);
            else revoked.abort(error);
          });
    reserved++;
    let invocation: Invocation;
    try {
      const signal = AbortSignal.any([left.signal, revoked.signal]);
      ({ invocation } = await runner.invoke({ fn, id, env, tty, timeoutMs: fn.manifest.sessionTimeoutMs, signal }));
    } catch (error) {
      reserved--;
      release();
      throw revoked.signal.aborted && !left.signal.aborted ? revoked.signal.reason : error;
    }
    void invocation.done.then(() => {
      reserved--;
      release();
    });
    // The signal has killed the command, and the client has gone: there is no one to answer.
    if (left.signal.aborted) return upgradeTaken(upgrade);
    if (revoked.signal.aborted) {
      invocation.kill('aborted');
      throw revoked.signal.reason;
    }
    if (closing) {
      invocation.kill('shutdown');
      throw new FnixError('SHUTTING_DOWN', 'fnix is shutting down and accepts no new sessions');
    }
    socket.off('end', leave); // from here the session owns the socket, and sees its close
    invocationIds.set(incoming, id);
    try {
      wss.handleUpgrade(incoming, socket, head, (ws) => {
        metrics.sessionOpened();
        const running = runSession({
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
        session = running;
        // Revoked in the moment between the container and the handshake.
        if (revoked.signal.aborted) running.stop(revoked.signal.reason as FnixError, 1008);
        sessions.add(running);
        if (options.records) keepSession(ws, invocation, options.records);
        log.info('session started', { function: fn.name, id, tty: tty ? `${tty.cols}x${tty.rows}` : 'no' });
        void running.ended.then((status) => {
          sessions.delete(running);
          metrics.sessionClosed();
          log.info('session ended', { function: fn.name, id, status: JSON.stringify(status) });
        });
      });
    } catch (error) {
      invocation.kill('aborted');
      throw error;
    }
    return upgradeTaken(upgrade);
  };

  return {
    open,
    async closeAll() {
      closing = true; // sessions still finding a container are refused when they find one
      const running = [...sessions];
      for (const session of running) session.shutdown();
      await Promise.allSettled(running.map((s) => s.ended));
    },
  };
}

/** Keeps a session's stderr lines, and notes for its record that it was upgraded (101) and what the client sent. */
function keepSession(ws: WebSocket, invocation: Invocation, records: Recorder): void {
  const { id } = invocation;
  let bytesIn = 0;
  ws.on('message', (data: Buffer) => {
    bytesIn += data.length;
  });
  const lines = records.tap({ function: invocation.functionName, invocationId: id, stream: 'stderr' }, (line) => invocation.mask(line));
  invocation.stderr.on('data', (chunk: Buffer) => lines.write(chunk));
  invocation.stderr.on('end', () => lines.end());
  // Before the record is written: that waits a turn past the end (metrics.settled).
  void invocation.done.then(() => records.note(id, { status: 101, bytesIn }));
}
