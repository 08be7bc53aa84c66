/**
 * @module
 * The Node HTTP server around the Hono app, and what it does before a request reaches the app:
 * - a bound on connections (every one is a file descriptor: see connection-limit.ts); beyond it new
 *   connections are closed as they arrive, said once in the log and counted, and served again once
 *   some close;
 * - deadlines for slow clients;
 * - every refusal Node would write itself (a malformed request, headers too large, a header deadline,
 *   no Host) is the same JSON error as the app's;
 * - `Expect: 100-continue` is answered only when the app reads the body, so that a body refused by its
 *   Content-Length gets its 413 at once, never a `100 Continue` first.
 */
import type { AddressInfo, Socket } from 'node:net';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { getRequestListener, RequestError, type HttpBindings } from '@hono/node-server';
import { FnixError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import { errorParts, errorResponse, rawErrorResponse } from './errors.ts';

/** The share of the bound below which refusing connections is over (and said to be). */
const RECOVERED = 0.9;

/** A listening server. */
export interface RunningServer {
  server: Server;
  /** e.g. `http://127.0.0.1:8080` */
  url: string;
  port: number;
  /** Connections now, the bound, and how many were refused for it. */
  connections(): ConnectionStats;
  /** Changes the bound (the open-files limit changed). */
  setMaxConnections(max: number): void;
  /** Stops accepting connections and closes idle ones; resolves when all are closed. */
  close(): Promise<void>;
}

/** The server's connections, for the metrics. */
export interface ConnectionStats {
  open: number;
  max: number;
  /** Connections closed as they arrived because `max` were open. */
  refused: number;
}

/** Options for {@link startServer}. */
export interface ServerOptions {
  /** What answers requests: a Hono app, or anything with its fetch. */
  app: { fetch: (request: Request, env: HttpBindings) => Response | Promise<Response> };
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Connections served at once; more are closed as they arrive (connection-limit.ts computes it). */
  maxConnections: number;
  log: Logger;
  /** Handles HTTP upgrades (WebSocket sessions); without it, upgrade requests are refused. */
  onUpgrade?: ((request: IncomingMessage, socket: Duplex, head: Buffer) => void) | undefined;
  /** How long a client has to send its request headers. @default 30000 */
  headersTimeoutMs?: number;
  /** How long a client has to send its whole request, body included. @default 300000 */
  requestTimeoutMs?: number;
}

/** Starts listening; resolves once the port is bound. */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { log } = options;
  const headersTimeout = options.headersTimeoutMs ?? 30_000;
  const listener = getRequestListener(options.app.fetch as never, {
    // A request Node parsed but that is no URL (`OPTIONS *`, a bad Host, no Host): the JSON 400.
    errorHandler: (error: unknown) => {
      if (error instanceof RequestError) return errorResponse(badRequest(error.message));
      log.error('request failed before the app', { error: String(error), stack: (error as Error)?.stack });
      return errorResponse(new FnixError('INTERNAL_ERROR', 'internal error; the gateway log has the details'));
    },
  });
  const server = createServer(
    {
      // Node checks the header and request deadlines on this tick (30 s by default, which would let a
      // slow client hold a connection for up to 30 s past its deadline).
      connectionsCheckingInterval: Math.min(1000, headersTimeout),
      headersTimeout,
      requestTimeout: options.requestTimeoutMs ?? 300_000,
      // Checked by the request listener instead, which answers in JSON (Node's own 400 has no body).
      requireHostHeader: false,
    },
    listener,
  );
  // A client must send its headers within 30 s and its whole request (body included) within 5 minutes;
  // a response may stream for as long as the function runs.
  server.keepAliveTimeout = 5_000;
  server.maxConnections = options.maxConnections;

  let open = 0;
  let refused = 0;
  // Refusals since the bound was reached: said once when it is reached, and once when it is left.
  let refusedNow = 0;
  server.on('connection', (socket: Socket) => {
    open++;
    socket.once('close', () => {
      open--;
      // Said once enough have closed that new ones will be served for a while, not at each close.
      if (refusedNow > 0 && open < Math.floor(server.maxConnections * RECOVERED)) {
        log.info('accepting connections again', { open, maxConnections: server.maxConnections, refused: refusedNow });
        refusedNow = 0;
      }
    });
  });
  server.on('drop', () => {
    refused++;
    if (refusedNow++ === 0) {
      log.warn('connection limit reached: new connections are closed until some of the open ones close', {
        maxConnections: server.maxConnections,
        setting: 'FNIX_MAX_CONNECTIONS, or the open-files limit',
      });
    }
  });
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => answerClientError(error, socket));
  server.on('checkContinue', (request: IncomingMessage, response: ServerResponse) => {
    continueOnRead(request, response);
    server.emit('request', request, response);
  });
  // An Expect other than 100-continue: Node's own answer would be a bare 417.
  server.on('checkExpectation', (request: IncomingMessage, response: ServerResponse) => {
    const expectation = String(request.headers.expect).slice(0, 100);
    const { status, headers, body } = errorParts(
      new FnixError('EXPECTATION_FAILED', `the gateway meets no expectation but 100-continue, not ${JSON.stringify(expectation)}`),
    );
    response.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(body), connection: 'close' }).end(body);
  });
  const onUpgrade = options.onUpgrade;
  if (onUpgrade) {
    server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      // Node hands an upgrade's socket over without its own error listener: a client that resets it
      // before anyone else listens must not end the process.
      socket.on('error', () => {});
      onUpgrade(request, socket, head);
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // From here on, an error of the listening socket (accept failing for lack of memory, say) is logged;
  // without a listener it would end the process.
  server.on('error', (error: Error) => log.error('the HTTP server reported an error; it goes on serving', { error: String(error) }));

  const { port } = server.address() as AddressInfo;
  const hostForUrl = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    server,
    url: `http://${hostForUrl}:${port}`,
    port,
    connections: () => ({ open, max: server.maxConnections, refused }),
    setMaxConnections: (max) => {
      server.maxConnections = max;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}

/** BAD_REQUEST for a request that is not valid HTTP, or that names no URL fnix can serve. */
function badRequest(reason: string): FnixError {
  return new FnixError('BAD_REQUEST', `malformed HTTP request: ${reason}`);
}

/**
 * Answers what Node's parser refused before there was a request, with the same JSON as the app; as
 * Node's own handler does, only when nothing of a response was written on this connection yet.
 */
function answerClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
  const message = (socket as unknown as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (error.code === 'ECONNRESET' || !socket.writable || message?.headersSent) {
    socket.destroy();
    return;
  }
  let fnixError: FnixError;
  if (error.code === 'HPE_HEADER_OVERFLOW') {
    fnixError = new FnixError('REQUEST_HEADERS_TOO_LARGE', 'the request headers exceed 16 KiB, the most the gateway takes');
  } else if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    fnixError = new FnixError('REQUEST_TIMEOUT', 'the request did not arrive within the deadline (30 s for the headers, 5 minutes for the whole request)');
  } else {
    fnixError = badRequest(String(error.message).replace(/^Parse Error: /, ''));
  }
  socket.once('finish', () => socket.destroy());
  socket.end(rawErrorResponse(fnixError));
}

/** Sends `100 Continue` when the app first reads the request body, and never once it has answered. */
function continueOnRead(request: IncomingMessage, response: ServerResponse): void {
  const read = request._read.bind(request);
  let asked = false;
  request._read = (size: number) => {
    if (!asked) {
      asked = true;
      if (!response.headersSent && !response.writableEnded) response.writeContinue();
    }
    read(size);
  };
}
