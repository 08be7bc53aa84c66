/**
 * @module
 * HTTP upgrades go through the Hono app, as honojs/node-ws's `injectWebSocket` has them: the server's
 * 'upgrade' event becomes a fetch Request whose env carries the socket ({@link UpgradeBindings}), so that
 * the app's middleware (the Host check) and routes answer it as any request. A route that takes upgrades
 * ({@link takeUpgrades}) takes over the socket and marks the upgrade taken; otherwise whatever the app
 * answered (the JSON error of its one error handler) is written raw to the socket, which is then closed.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Context, MiddlewareHandler } from 'hono';
import { FnixError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import { errorResponse, rawResponse, toFnixError } from './errors.ts';

/** An upgrade request's connection, until a route takes it over. */
export interface PendingUpgrade {
  socket: Duplex;
  /** What the client sent after the request's headers: the start of the upgraded protocol. */
  head: Buffer;
  /** Set by the route that took over the socket: the app's response is then not written. */
  taken: boolean;
}

/** The env of an upgrade request: @hono/node-server's HttpBindings, with the socket instead of a response. */
export interface UpgradeBindings {
  incoming: IncomingMessage;
  outgoing: undefined;
  upgrade: PendingUpgrade;
}

/** What answers upgrade requests: a Hono app, or anything with its fetch. */
export interface UpgradeApp {
  fetch(request: Request, env: UpgradeBindings): Response | Promise<Response>;
}

/** Takes an upgrade: answers {@link upgradeTaken} once it owns the socket, or with (or by throwing) a refusal. */
export type UpgradeHandler = (c: Context, env: UpgradeBindings) => Promise<Response>;

/** The server's 'upgrade' listener, which hands every upgrade request to `app`. */
export function createUpgradeHandler({ app, log }: { app: UpgradeApp; log: Logger }): (incoming: IncomingMessage, socket: Duplex, head: Buffer) => void {
  return function handleUpgrade(incoming, socket, head) {
    // A client that resets the socket before anyone else listens must not end the process.
    socket.on('error', () => {});
    answerUpgrade(app, log, incoming, { socket, head, taken: false }).catch((error: unknown) => {
      log.error('session upgrade failed', { error: String(error), stack: (error as Error).stack });
      socket.destroy();
    });
  };
}

/** The upgrade of a request the app is answering, or undefined for a plain HTTP request. */
export function upgradeOf(c: Context): UpgradeBindings | undefined {
  const env = c.env as Partial<UpgradeBindings> | undefined;
  return env?.upgrade ? (env as UpgradeBindings) : undefined;
}

/**
 * Middleware for a route that takes upgrades: an upgrade request, whatever its method, goes to `take`
 * (which answers GET's handshake checks itself), and a plain request on to the route's HTTP handlers.
 */
export function takeUpgrades(take: UpgradeHandler): MiddlewareHandler {
  // Not async: a plain request passes on with no promise of this middleware's own.
  return function takeUpgrade(c, next) {
    const env = upgradeOf(c);
    if (!env) return next();
    return take(c, env);
  };
}

/** Middleware: an upgrade request reaching it, past every route that takes upgrades, is ROUTE_NOT_FOUND. */
export function refuseUpgrades(): MiddlewareHandler {
  return function refuseUpgrade(c, next) {
    if (upgradeOf(c)) throw new FnixError('ROUTE_NOT_FOUND', `no WebSocket route for ${new URL(c.req.url).pathname}; sessions are at /sessions/<name>`);
    return next();
  };
}

/** Marks `upgrade` taken (its socket is the route's now), and returns the response Hono needs, which is never written. */
export function upgradeTaken(upgrade: PendingUpgrade): Response {
  upgrade.taken = true;
  return new Response(null);
}

/** Runs the app on the upgrade request, and writes its answer unless a route took the socket. */
async function answerUpgrade(app: UpgradeApp, log: Logger, incoming: IncomingMessage, upgrade: PendingUpgrade): Promise<void> {
  let response: Response;
  try {
    response = await app.fetch(toRequest(incoming), { incoming, outgoing: undefined, upgrade });
  } catch (error) {
    log.error('session upgrade failed', { error: String(error), stack: (error as Error).stack });
    response = errorResponse(toFnixError(error));
  }
  if (upgrade.taken) return;
  const { socket } = upgrade;
  const raw = await rawResponse(response);
  if (socket.destroyed) return;
  // Server sockets are half-open: end() alone would leave this one waiting for the client to close it.
  socket.once('finish', () => socket.destroy());
  socket.end(raw);
}

/**
 * The upgrade request as a fetch Request. It has no body, whatever its method: what follows the headers
 * belongs to the upgraded connection (`head`). Built as a GET and given its own method after, as fetch
 * constructs no TRACE.
 */
function toRequest(incoming: IncomingMessage): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(incoming.headers)) {
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
  }
  const request = new Request(requestUrl(incoming), { headers });
  if (incoming.method !== undefined && incoming.method !== 'GET') Object.defineProperty(request, 'method', { value: incoming.method });
  return request;
}

/** The request's URL, with the host the client asked for (SERVER_NAME comes from it, as over HTTP). */
function requestUrl(incoming: IncomingMessage): URL {
  try {
    return new URL(incoming.url ?? '/', `http://${incoming.headers.host ?? 'localhost'}`);
  } catch {
    return new URL(incoming.url ?? '/', 'http://localhost');
  }
}
