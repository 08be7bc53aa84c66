/**
 * @module
 * Upgrades through the app (gateway/upgrade.ts), over real sockets to a real server on port 0,
 * with a small app of the gateway's own parts: the Host check first, a route that takes upgrades, one
 * refusal for every other route, and what the app answers written raw, the socket then closed. The
 * degraded app answers upgrades the same way.
 */
import { connect } from 'node:net';
import type { HttpBindings } from '@hono/node-server';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDegradedApp } from '../../gateway/degraded.ts';
import { errorResponse, rawErrorResponse, toFnixError } from '../../gateway/errors.ts';
import { checkHost, HostAllowlist } from '../../gateway/host-check.ts';
import { type RunningServer, startServer } from '../../gateway/server.ts';
import { createUpgradeHandler, refuseUpgrades, takeUpgrades, type UpgradeBindings, upgradeTaken } from '../../gateway/upgrade.ts';
import { FnixError } from '../../runtime/errors.ts';
import { createLogger } from '../../runtime/log.ts';
import { linesOf } from '../helpers/log-lines.ts';

const logs: string[] = [];
const log = createLogger({ stream: { write: (text: string) => logs.push(...linesOf(text)) } });
const servers: RunningServer[] = [];

/** A server whose requests and upgrades alike go to `app`. */
async function serve(app: { fetch: (request: Request, env: HttpBindings | UpgradeBindings) => Response | Promise<Response> }): Promise<number> {
  const server = await startServer({ app, host: '127.0.0.1', port: 0, maxConnections: 100, log, onUpgrade: createUpgradeHandler({ app, log }) });
  servers.push(server);
  return server.port;
}

/** Sends an upgrade request (and `head` after it); resolves with all the server wrote once it closed the socket. */
function upgrade(port: number, path: string, { method = 'GET', host = '127.0.0.1', head = '' } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
    });
    socket.on('close', () => resolve(answer));
    socket.on('error', reject);
    socket.write(`${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n${head}`);
  });
}

/** The gateway's upgrade edge in small: a route that takes upgrades at /take/:name, and a plain one beside it. */
function testApp(): Hono {
  const app = new Hono();
  app.use('*', checkHost(new HostAllowlist()));
  app.use(
    '/take/:name',
    takeUpgrades(async (c, { upgrade }) => {
      if (c.req.param('name') === 'full') throw new FnixError('NO_CAPACITY', 'no room');
      upgrade.socket.end(`taken ${c.req.method} ${c.req.param('name')} ${upgrade.head.toString()}`);
      return upgradeTaken(upgrade);
    }),
  );
  app.use('*', refuseUpgrades());
  app.get('/take/:name', (c) => c.text(`page ${c.req.param('name')}`));
  app.get('/plain', (c) => c.text('plain'));
  app.onError((error) => errorResponse(toFnixError(error)));
  return app;
}

let port: number;
beforeAll(async () => {
  port = await serve(testApp());
});
afterAll(async () => {
  for (const server of servers) {
    server.server.closeAllConnections();
    await server.close();
  }
});

describe('upgrades through the app', () => {
  it('refuses an upgrade on a route that takes none with ROUTE_NOT_FOUND, as rawErrorResponse writes it, and closes the socket', async () => {
    for (const path of ['/plain', '/elsewhere']) {
      const refusal = new FnixError('ROUTE_NOT_FOUND', `no WebSocket route for ${path}; sessions are at /sessions/<name>`);
      expect(await upgrade(port, path)).toBe(rawErrorResponse(refusal));
    }
  });

  it('checks the Host before any route, the ones that take upgrades included', async () => {
    const answer = await upgrade(port, '/take/x', { host: 'rebound.example' });
    expect(answer).toMatch(/^HTTP\/1\.1 403 HOST_NOT_ALLOWED\r\n/);
    expect(answer).toContain('\r\nconnection: close\r\n');
    expect(answer).toContain('"code":"HOST_NOT_ALLOWED"');
  });

  it('gives a route that takes upgrades the socket and what followed the headers, whatever the method, and writes nothing of its own', async () => {
    expect(await upgrade(port, '/take/x', { head: 'early bytes' })).toBe('taken GET x early bytes');
    expect(await upgrade(port, '/take/y', { method: 'POST' })).toBe('taken POST y ');
    expect(await upgrade(port, '/take/z', { method: 'TRACE' })).toBe('taken TRACE z ');
  });

  it("writes a taking route's refusal as the error handler made it, Retry-After included", async () => {
    const answer = await upgrade(port, '/take/full');
    expect(answer).toBe(rawErrorResponse(new FnixError('NO_CAPACITY', 'no room')));
    expect(answer).toContain('\r\nretry-after: 1\r\n');
  });

  it('leaves plain requests to the HTTP routes', async () => {
    expect(await (await fetch(`http://127.0.0.1:${port}/take/x`)).text()).toBe('page x');
  });

  it('answers 500 INTERNAL_ERROR, and logs it, when the app itself fails', async () => {
    const failing = await serve({
      fetch: () => {
        throw new Error('the app broke');
      },
    });
    const answer = await upgrade(failing, '/take/x');
    expect(answer).toMatch(/^HTTP\/1\.1 500 INTERNAL_ERROR\r\n/);
    expect(answer).not.toContain('the app broke');
    expect(logs.some((line) => line.includes('session upgrade failed') && line.includes('the app broke'))).toBe(true);
  });
});

describe('upgrades through the degraded app', () => {
  it('answers every upgrade with its 503 naming the cause, and checks the Host first', async () => {
    const cause = new FnixError('RUNTIME_UNAVAILABLE', 'podman does not work: simulated failure');
    const degraded = await serve(createDegradedApp(() => cause, new HostAllowlist()));
    for (const path of ['/sessions/shell', '/fn/hello', '/healthz']) {
      const answer = await upgrade(degraded, path);
      expect(answer, path).toMatch(/^HTTP\/1\.1 503 /);
      expect(answer, path).toContain('\r\nretry-after: 5\r\n');
      expect(answer, path).toContain('simulated failure');
    }
    expect(await upgrade(degraded, '/sessions/shell', { host: 'rebound.example' })).toMatch(/^HTTP\/1\.1 403 HOST_NOT_ALLOWED\r\n/);
  });
});
