/**
 * @module
 * The Node HTTP server around the Hono app.
 */
import type { AddressInfo } from 'node:net';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { serve, type Http2Bindings, type HttpBindings } from '@hono/node-server';

/** A listening server. */
export interface RunningServer {
  server: Server;
  /** e.g. `http://127.0.0.1:8080` */
  url: string;
  port: number;
  /** Stops accepting connections and closes idle ones; resolves when all are closed. */
  close(): Promise<void>;
}

/** Options for {@link startServer}. */
export interface ServerOptions {
  /** What answers requests: a Hono app, or anything with its fetch. */
  app: { fetch: (request: Request, env: HttpBindings | Http2Bindings) => Response | Promise<Response> };
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Handles HTTP upgrades (WebSocket sessions); without it, upgrade requests are refused. */
  onUpgrade?: ((request: IncomingMessage, socket: Duplex, head: Buffer) => void) | undefined;
  /** How long a client has to send its request headers. @default 30000 */
  headersTimeoutMs?: number;
  /** How long a client has to send its whole request, body included. @default 300000 */
  requestTimeoutMs?: number;
}

/** Starts listening; resolves once the port is bound. */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const server = await new Promise<Server>((resolve, reject) => {
    const headersTimeout = options.headersTimeoutMs ?? 30_000;
    const s = serve(
      {
        fetch: options.app.fetch,
        hostname: options.host,
        port: options.port,
        // Node checks the header and request deadlines on this tick (30 s by default, which would let a
        // slow client hold a connection for up to 30 s past its deadline).
        serverOptions: { connectionsCheckingInterval: Math.min(1000, headersTimeout), headersTimeout, requestTimeout: options.requestTimeoutMs ?? 300_000 },
      },
      () => resolve(s as Server),
    );
    (s as Server).once('error', reject);
  });
  // A client must send its headers within 30 s and its whole request (body included) within 5 minutes;
  // a response may stream for as long as the function runs.
  server.keepAliveTimeout = 5_000;
  if (options.onUpgrade) server.on('upgrade', options.onUpgrade);
  const { port } = server.address() as AddressInfo;
  const hostForUrl = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    server,
    url: `http://${hostForUrl}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
