/**
 * @module
 * An upgrade (a WebSocket handshake) on `/fn/<name>/...` of a serve function: the request goes to one
 * of its instances over a connection of its own, and once the server has answered, the bytes go both
 * ways untouched until either side closes. The server's answer gains `x-fnix-invocation-id`; an answer
 * that is not `101` reaches the client as the server gave it. The connection holds one of the
 * instance's `concurrency` slots while it lasts, and lasts at most the manifest's sessionTimeoutMs.
 *
 * Upgrades of other functions' URLs are refused as before (ROUTE_NOT_FOUND): their WebSocket is
 * the stdio session at /sessions/<name>.
 */
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { Context } from 'hono';
import { nanoid } from 'nanoid';
import { FnixError } from '../../runtime/errors.ts';
import type { FunctionRegistry } from '../../runtime/functions/registry.ts';
import type { Logger } from '../../runtime/log.ts';
import type { Recorder } from '../../runtime/records/recorder.ts';
import type { ServeInstances, Slot } from '../../runtime/serve/instances.ts';
import { type KeyGuard, revokedKeyError } from '../auth/keys/guard.ts';
import { INVOCATION_ID_HEADER } from '../routes/invoke.ts';
import { type UpgradeBindings, type UpgradeHandler, upgradeTaken } from '../upgrade.ts';
import { requestHeaders, upstreamPath } from './headers.ts';
import { acquireServed } from './http.ts';

/** The most of the server's answer read before the blank line that ends its head. */
const MAX_HEAD_BYTES = 64 * 1024;

/** What the upgrade route needs. */
export interface ServeUpgradeOptions {
  registry: FunctionRegistry;
  instances: ServeInstances;
  log: Logger;
  /**
   * Refuses upgrades to private functions without a key that opens them, and closes the WebSockets
   * whose key is revoked (gateway/auth/keys/guard.ts).
   */
  keys: Pick<KeyGuard, 'check' | 'hold'>;
  /** Where each WebSocket's record goes when it closes (kind `websocket`), refused ones included. @default none */
  records?: Recorder | undefined;
}

/** Creates the handler for upgrades on /fn/<name>/... (see takeUpgrades). */
export function createServeUpgrade(options: ServeUpgradeOptions): UpgradeHandler {
  const { registry, instances, log, keys, records } = options;
  return async function passUpgrade(c: Context, env: UpgradeBindings): Promise<Response> {
    const { incoming, upgrade } = env;
    const path = new URL(c.req.url).pathname;
    const name = decodeURIComponent(path.split('/')[2] ?? '');
    const fn = registry.get(name);
    if (!fn.manifest.serve) {
      throw new FnixError(
        'ROUTE_NOT_FOUND',
        `function '${fn.name}' takes no WebSocket at /fn/${fn.name}: it is not a serve function; its stdio session is at /sessions/${fn.name}`,
      );
    }
    // Before an instance is taken: a refused upgrade holds nothing.
    const address = incoming.socket.remoteAddress ?? '';
    const keyId = keys.check({ fn, headers: incoming.headers, address, route: 'websocket' });
    // Its own id, once it is passed on: a refused upgrade carries none, as every refused upgrade.
    const id = nanoid();
    const begin = performance.now();
    const startedAt = Date.now();
    records?.started(id);
    const abort = new AbortController();
    const client = upgrade.socket;
    const onClientGone = () => abort.abort(new FnixError('INVOCATION_ABORTED', 'the client went away while its WebSocket waited for an instance'));
    client.once('close', onClientGone);
    // The key it came with, revoked: before the splice, the upgrade is refused (KEY_INVALID); after, the
    // connection is closed.
    let closeSplice: ((why: string, outcome: SpliceOutcome) => void) | undefined;
    let release = () => {};
    const holdKey = (held: string | undefined, name: string) => {
      release();
      release =
        held === undefined
          ? () => {}
          : keys.hold(held, () => {
              if (closeSplice) closeSplice('its invoke key was revoked', 'KEY_INVALID');
              else abort.abort(revokedKeyError(name, held));
            });
    };
    holdKey(keyId, fn.name);
    // Moved to the version served now, which may be private when `fn` was not: checked again.
    const admit = (now: typeof fn) => holdKey(keys.check({ fn: now, headers: incoming.headers, address, route: 'websocket' }), now.name);
    let slot: Slot | undefined;
    let server: Socket | undefined;
    try {
      slot = await acquireServed(instances, registry, fn, abort.signal, admit);
      server = await slot.instance.connect();
      const headers = requestHeaders({ incoming, invocationId: id, upgrade: true });
      let head = `${incoming.method} ${upstreamPath(incoming.url ?? '/')} HTTP/1.1\r\n`;
      for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
      server.write(`${head}\r\n`);
      if (upgrade.head.length > 0) server.write(upgrade.head);
      const answer = await readHead(server, slot.instance.fn.manifest.timeoutMs, abort.signal);
      if (client.destroyed) throw new FnixError('INVOCATION_ABORTED', 'the client went away before the server answered its upgrade');
      client.off('close', onClientGone);
      const taken = upgradeTaken(upgrade);
      const { instance } = slot;
      const alone = instance.settings.concurrency === 1;
      if (alone) instance.beginRequest(id);
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(answer.head.toString('latin1'))?.[1] ?? 0) || null;
      closeSplice = splice(
        client,
        server,
        withHeader(answer.head, `${INVOCATION_ID_HEADER}: ${id}`),
        answer.rest,
        slot,
        log,
        id,
        ({ outcome, bytesIn, bytesOut }) => {
          release();
          if (alone) instance.endRequest(id);
          records?.ended({
            id,
            fn: instance.fn,
            kind: 'websocket',
            startedAt,
            durationMs: performance.now() - begin,
            outcome,
            status,
            bytesIn,
            bytesOut,
            instance: instance.id,
            container: instance.containerName,
          });
        },
      );
      return taken;
    } catch (error) {
      release();
      client.off('close', onClientGone);
      server?.destroy();
      slot?.release();
      records?.refused({ id, fn, kind: 'websocket', outcome: (error as FnixError).code ?? 'INTERNAL_ERROR', startedAt, waitMs: performance.now() - begin });
      throw error;
    }
  };
}

/** The server's answer head (up to its blank line) and what came after it. */
async function readHead(server: Socket, timeoutMs: number, signal: AbortSignal): Promise<{ head: Buffer; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let data = Buffer.alloc(0);
    const done = (fn: () => void) => {
      clearTimeout(timer);
      server.off('data', onData);
      server.off('end', onEnd);
      server.off('error', onError);
      signal.removeEventListener('abort', onAbort);
      server.pause();
      fn();
    };
    const bad = (what: string) => new FnixError('FUNCTION_BAD_RESPONSE', `the function's server ${what} to an upgrade request`);
    const onData = (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      const end = data.indexOf('\r\n\r\n');
      if (end !== -1) done(() => resolve({ head: data.subarray(0, end + 2), rest: data.subarray(end + 4) }));
      else if (data.length > MAX_HEAD_BYTES) done(() => reject(bad(`sent more than ${MAX_HEAD_BYTES} bytes of head`)));
    };
    const onEnd = () => done(() => reject(bad('closed the connection without answering')));
    const onError = (error: Error) => done(() => reject(bad(`failed (${error.message})`)));
    const onAbort = () => done(() => reject(signal.reason));
    const timer = setTimeout(
      () => done(() => reject(new FnixError('FUNCTION_TIMEOUT', `the function's server did not answer an upgrade within its timeoutMs of ${timeoutMs} ms`))),
      timeoutMs,
    );
    server.on('data', onData);
    server.on('end', onEnd);
    server.on('error', onError);
    signal.addEventListener('abort', onAbort, { once: true });
    // The client may have gone while the connection was being opened.
    if (signal.aborted) onAbort();
  });
}

/** `head` (ending in one CRLF) with one more header line, and the blank line. */
function withHeader(head: Buffer, line: string): Buffer {
  return Buffer.concat([head, Buffer.from(`${line}\r\n\r\n`, 'latin1')]);
}

/** Why a spliced connection closed, for its record: by itself, at sessionTimeoutMs, or its key revoked. */
type SpliceOutcome = 'OK' | 'SESSION_TIMEOUT' | 'KEY_INVALID';

/** What a spliced connection passed, told when it closes. */
interface SpliceEnd {
  outcome: SpliceOutcome;
  /** Bytes from the client to the server, after the upgrade request; and back, after the answer's head. */
  bytesIn: number;
  bytesOut: number;
}

/**
 * Passes bytes both ways until either side ends; then both close, the slot is released, and `ended` is
 * told. Returns what closes it from outside.
 */
function splice(
  client: Duplex,
  server: Socket,
  head: Buffer,
  rest: Buffer,
  slot: Slot,
  log: Logger,
  id: string,
  ended: (end: SpliceEnd) => void = () => {},
): (why: string, outcome: SpliceOutcome) => void {
  const begin = performance.now();
  const { instance } = slot;
  let closed = false;
  let bytesIn = 0;
  let bytesOut = rest.length;
  const close = (why: string, outcome: SpliceOutcome = 'OK') => {
    if (closed) return;
    closed = true;
    clearTimeout(timer);
    client.destroy();
    server.destroy();
    slot.release();
    log.info('websocket closed', { function: instance.fn.name, id, instance: instance.id, ms: (performance.now() - begin).toFixed(1), why });
    ended({ outcome, bytesIn, bytesOut });
  };
  const limit = instance.fn.manifest.sessionTimeoutMs;
  const timer = setTimeout(() => close(`its sessionTimeoutMs of ${limit} ms passed`, 'SESSION_TIMEOUT'), limit);
  client.on('data', (chunk: Buffer) => {
    bytesIn += chunk.length;
  });
  server.on('data', (chunk: Buffer) => {
    bytesOut += chunk.length;
  });
  client.write(head);
  if (rest.length > 0) client.write(rest);
  server.pipe(client);
  client.pipe(server);
  server.resume();
  client.on('error', () => close('client error'));
  server.on('error', () => close('server error'));
  client.on('close', () => close('client closed'));
  // A server that dies closes its relays, and with them this connection.
  server.on('close', () => close('server closed'));
  return close;
}
