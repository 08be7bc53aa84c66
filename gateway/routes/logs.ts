/**
 * @module
 * The records API, behind the deploy token: a function's log lines (`/functions/<name>/logs`, and with
 * `follow=1` a stream of new ones as NDJSON or server-sent events), its invocation records
 * (`/functions/<name>/invocations`), and one invocation with its lines (`/invocations/<id>`). The
 * store is runtime/records/store.ts; this file reads requests and writes answers (docs/logs.md).
 */
import type { HttpBindings } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { Hono } from 'hono';
import type { ServerResponse } from 'node:http';
import { FnixError } from '../../runtime/errors.ts';
import type { FunctionRegistry } from '../../runtime/functions/registry.ts';
import type { Logger } from '../../runtime/log.ts';
import type { StoredLine } from '../../runtime/records/follow.ts';
import { MAX_QUERY_ROWS } from '../../runtime/records/queries.ts';
import type { RecordStore } from '../../runtime/records/store.ts';
import type { LogLine } from '../../runtime/records/types.ts';
import type { TokenGuard } from '../auth/guard.ts';

/** Lines (or records) a query returns unless `limit` says otherwise. */
export const DEFAULT_LIMIT = 100;
/** Bytes a follower may leave unread in its connection before it is cut. */
export const FOLLOW_MAX_BUFFER = 1024 * 1024;
/** How often an SSE follower gets a comment, so that proxies and clients see the stream is alive. */
export const SSE_KEEPALIVE_MS = 15_000;
/** How long `/invocations/<id>` waits for the record of an invocation that is still ending. */
const RECORD_WAIT_MS = 2000;

/** What the records API needs. */
export interface LogsApiOptions {
  store: RecordStore;
  /** The functions served now: their names may be asked for before they have written anything. */
  registry: Pick<FunctionRegistry, 'list'>;
  token: TokenGuard;
  log: Logger;
}

const UNITS_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** The records routes, to mount at /api. */
export function createLogsApi(options: LogsApiOptions): Hono<{ Bindings: HttpBindings }> {
  const { store, registry, token, log } = options;
  const api = new Hono<{ Bindings: HttpBindings }>();
  api.use('*', async function requireToken(c, next) {
    token.bearer({ route: 'api', authorization: c.req.header('authorization'), address: c.env.incoming.socket.remoteAddress ?? '' });
    await next();
  });
  const knownFunction = (name: string) => {
    if (store.knows(name) || registry.list().some((f) => f.name === name)) return name;
    throw new FnixError('FUNCTION_NOT_FOUND', `no function named ${JSON.stringify(name.slice(0, 80))} is deployed or has records`, {
      details: { function: name.slice(0, 80) },
    });
  };

  api.get('/functions/:name/logs', (c) => {
    const name = knownFunction(c.req.param('name'));
    const query = {
      function: name,
      sinceMs: parseSince(c.req.query('since')),
      limit: parseLimit(c.req.query('limit')),
      invocationId: parseId(c.req.query('invocation'), 'invocation'),
    };
    const follow = c.req.query('follow');
    if (follow === undefined || follow === '0' || follow === 'false') return c.json({ lines: store.lines(query).map(view) });
    const sse = (c.req.header('accept') ?? '').includes('text/event-stream');
    followLines({ store, log, outgoing: c.env.outgoing, query, sse });
    return RESPONSE_ALREADY_SENT;
  });

  api.get('/functions/:name/invocations', (c) => {
    const name = knownFunction(c.req.param('name'));
    const outcome = c.req.query('outcome');
    if (outcome !== undefined && !/^[A-Z][A-Z_]{0,63}$/.test(outcome)) {
      throw new FnixError('BAD_REQUEST', `outcome=${JSON.stringify(outcome.slice(0, 80))}: expected OK or an error code, such as FUNCTION_FAILED`);
    }
    const invocations = store.invocations({ function: name, sinceMs: parseSince(c.req.query('since')), limit: parseLimit(c.req.query('limit')), outcome });
    return c.json({ invocations });
  });

  api.get('/invocations/:id', async (c) => {
    const id = parseId(c.req.param('id'), 'id') ?? '';
    // An invocation that has just ended (its error response is out) has its record written a moment later.
    await store.waitFor(id, RECORD_WAIT_MS);
    const found = store.invocation(id);
    if (!found) {
      throw new FnixError(
        'INVOCATION_NOT_FOUND',
        `no invocation ${JSON.stringify(id)} is recorded: it is still running, or older than the records kept (docs/logs.md)`,
        {
          details: { invocationId: id },
        },
      );
    }
    return c.json({ invocation: found.invocation, lines: found.lines.map(view) });
  });
  return api;
}

/** A stored line as the API shows it (without its position). */
function view({ seq: _seq, ...line }: StoredLine): LogLine {
  return line;
}

/**
 * Streams `query`'s recent lines, then every new one, until the client goes (or is too slow, or the
 * store closes). The subscription comes first and the recent lines are read after it, so no line falls
 * between them; lines seen in both are told once (by their position).
 */
function followLines(options: {
  store: RecordStore;
  log: Logger;
  outgoing: ServerResponse;
  query: { function: string; sinceMs: number | undefined; limit: number; invocationId: string | undefined };
  sse: boolean;
}): void {
  const { store, outgoing, query, sse } = options;
  let last = 0;
  let live = false;
  const early: StoredLine[] = [];
  let keepalive: NodeJS.Timeout | undefined;
  let unsubscribe = () => {};
  const finish = (how: 'end' | 'destroy') => {
    unsubscribe();
    clearInterval(keepalive);
    if (how === 'destroy') outgoing.destroy();
    else if (!outgoing.writableEnded) outgoing.end();
  };
  const send = (line: StoredLine) => {
    if (outgoing.destroyed) return;
    last = line.seq;
    if (query.invocationId !== undefined && line.invocationId !== query.invocationId) return;
    const json = JSON.stringify(view(line));
    outgoing.write(sse ? `data: ${json}\n\n` : `${json}\n`);
    if (outgoing.writableLength > FOLLOW_MAX_BUFFER) {
      options.log.warn('a log follower was cut: it read too slowly', { function: query.function, buffered: outgoing.writableLength });
      finish('destroy');
    }
  };
  // Throws NO_CAPACITY before anything is written: the app's error handler answers.
  unsubscribe = store.follow(
    query.function,
    (line) => (live ? send(line) : early.push(line)),
    () => finish('end'),
  );
  let recent: StoredLine[];
  try {
    recent = store.lines(query);
  } catch (error) {
    unsubscribe();
    throw error;
  }
  outgoing.on('close', () => finish('end'));
  outgoing.writeHead(200, {
    'content-type': sse ? 'text/event-stream; charset=utf-8' : 'application/x-ndjson',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
  });
  outgoing.flushHeaders();
  for (const line of recent) send(line);
  live = true;
  // The lines stored while the recent ones were read are in both: only those after the last one sent.
  for (const line of early) if (line.seq > last) send(line);
  early.length = 0;
  if (sse) keepalive = setInterval(() => outgoing.write(': keep-alive\n\n'), SSE_KEEPALIVE_MS).unref();
}

/** `since`: a duration back from now (`30s`, `10m`, `2h`, `7d`) or an ISO time; undefined when absent. */
export function parseSince(raw: string | undefined, now = Date.now()): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  const duration = /^(\d{1,9})([smhd])$/.exec(raw);
  if (duration) return now - Number(duration[1]) * UNITS_MS[duration[2]!]!;
  const time = /^\d{4}-\d{2}-\d{2}/.test(raw) ? Date.parse(raw) : Number.NaN;
  if (Number.isNaN(time)) {
    throw new FnixError(
      'BAD_REQUEST',
      `since=${JSON.stringify(raw.slice(0, 80))}: expected a duration such as 10m, 2h or 7d, or an ISO time such as 2026-12-01T10:00:00Z`,
    );
  }
  return time;
}

/** `limit`: 1 to MAX_QUERY_ROWS, DEFAULT_LIMIT when absent. */
export function parseLimit(raw: string | undefined): number {
  if (raw === undefined || raw === '') return DEFAULT_LIMIT;
  const value = /^\d{1,6}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(value >= 1 && value <= MAX_QUERY_ROWS)) {
    throw new FnixError('BAD_REQUEST', `limit=${JSON.stringify(raw.slice(0, 80))}: expected an integer from 1 to ${MAX_QUERY_ROWS}`);
  }
  return value;
}

/** An invocation id: what fnix makes (nanoid's letters) and nothing longer than 64. */
function parseId(raw: string | undefined, what: string): string | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^[\w-]{1,64}$/.test(raw))
    throw new FnixError(
      'BAD_REQUEST',
      `${what}=${JSON.stringify(raw.slice(0, 80))}: expected an invocation id, such as the x-fnix-invocation-id header of a response`,
    );
  return raw;
}
