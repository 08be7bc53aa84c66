/**
 * @module
 * The records API, behind the deploy token: a function's log lines (`/functions/<name>/logs`, and with
 * `follow=1` a stream of new ones as NDJSON or server-sent events), its invocation records
 * (`/functions/<name>/invocations`), and one invocation with its lines (`/invocations/<id>`). The
 * store is runtime/records/store.ts; this file reads requests and writes answers (docs/logs.md).
 *
 * In a cluster (`cluster` given), each route gathers every member's part, labelled with its `node`
 * (logs-cluster.ts); `?node=<name>` asks that node alone, and `?local=1` answers from this node alone
 * (what the gathering node asks the others).
 */
import type { HttpBindings } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { type Context, Hono } from 'hono';
import { FnixError } from '../../runtime/errors.ts';
import type { FunctionRegistry } from '../../runtime/functions/registry.ts';
import type { Logger } from '../../runtime/log.ts';
import { type LinesQuery, MAX_QUERY_ROWS } from '../../runtime/records/queries.ts';
import type { RecordStore } from '../../runtime/records/store.ts';
import type { InvocationRecord, LogLine } from '../../runtime/records/types.ts';
import type { TokenGuard } from '../auth/guard.ts';
import { ClusterLogs, type ClusterLogsOptions, type Missing, type Targets } from './logs-cluster.ts';
import { FollowStream, localFollow, view } from './logs-stream.ts';

export { FOLLOW_MAX_BUFFER, SSE_KEEPALIVE_MS } from './logs-stream.ts';

/** Lines (or records) a query returns unless `limit` says otherwise. */
export const DEFAULT_LIMIT = 100;
/** How long `/invocations/<id>` waits for the record of an invocation that is still ending. */
const RECORD_WAIT_MS = 2000;

/** What the records API needs. */
export interface LogsApiOptions {
  store: RecordStore;
  /** The functions served now: their names may be asked for before they have written anything. */
  registry: Pick<FunctionRegistry, 'list'>;
  token: TokenGuard;
  log: Logger;
  /** In a cluster: the members to gather from, and the admin token to ask them with. @default none (this node alone, no labels) */
  cluster?: ClusterLogsOptions | undefined;
}

/** Which nodes one request is answered from. */
type Scope =
  /** Not in a cluster: this node, unlabelled, as always. */
  | { kind: 'single' }
  /** `local=1`: this node alone, labelled. */
  | { kind: 'local'; node: string }
  /** Gathered from these nodes. */
  | { kind: 'gather'; targets: Targets };

const UNITS_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** The records routes, to mount at /api. */
export function createLogsApi(options: LogsApiOptions): Hono<{ Bindings: HttpBindings }> {
  const { store, registry, token, log } = options;
  const cluster = options.cluster ? new ClusterLogs(options.cluster) : undefined;
  const api = new Hono<{ Bindings: HttpBindings }>();
  api.use('*', async function requireToken(c, next) {
    token.bearer({ route: 'api', authorization: c.req.header('authorization'), address: c.env.incoming.socket.remoteAddress ?? '' });
    await next();
  });
  const knows = (name: string) => store.knows(name) || registry.list().some((f) => f.name === name);
  const knownFunction = (name: string, missing?: Missing[]) => {
    if (knows(name)) return name;
    const cut = name.slice(0, 80);
    const unanswered = missing?.length ? `; ${missingText(missing)}, and may have it` : '';
    throw new FnixError('FUNCTION_NOT_FOUND', `no function named ${JSON.stringify(cut)} is deployed or has records${unanswered}`, {
      details: missing?.length ? { function: cut, missing } : { function: cut },
    });
  };
  const scopeOf = (c: Context): Scope => {
    const node = c.req.query('node');
    if (!cluster) {
      if (node !== undefined && node !== '') {
        throw new FnixError(
          'BAD_REQUEST',
          `node=${JSON.stringify(node.slice(0, 80))}: this gateway is not in a cluster (FNIX_CLUSTER_ETCD is not set); leave node= out`,
        );
      }
      return { kind: 'single' };
    }
    if (isOn(c.req.query('local'))) return { kind: 'local', node: cluster.self };
    return { kind: 'gather', targets: cluster.targets(node) };
  };
  /** `path` on the other members: this node alone there (`local=1`), the same parameters. */
  const remotePath = (path: string, params: Record<string, string | undefined>) => {
    const query = new URLSearchParams({ local: '1' });
    for (const [key, value] of Object.entries(params)) if (value !== undefined) query.set(key, value);
    return `/api${path}?${query}`;
  };

  api.get('/functions/:name/logs', async (c) => {
    const name = c.req.param('name');
    const query: LinesQuery = {
      function: name,
      sinceMs: parseSince(c.req.query('since')),
      limit: parseLimit(c.req.query('limit')),
      invocationId: parseId(c.req.query('invocation'), 'invocation'),
    };
    const scope = scopeOf(c);
    const follow = isOn(c.req.query('follow'));
    const sse = (c.req.header('accept') ?? '').includes('text/event-stream');
    if (scope.kind !== 'gather') {
      knownFunction(name);
      const node = scope.kind === 'local' ? scope.node : undefined;
      const label = (line: LogLine) => (node === undefined ? line : { ...line, node });
      if (!follow) return c.json({ lines: store.lines(query).map((line) => label(view(line))) });
      followLines({ store, log, c, query, sse, label, marker: node !== undefined });
      return RESPONSE_ALREADY_SENT;
    }
    const since = query.sinceMs === undefined ? undefined : new Date(query.sinceMs).toISOString();
    const params = { since, limit: String(query.limit), invocation: query.invocationId };
    const path = `/functions/${encodeURIComponent(name)}/logs`;
    if (follow) {
      // Only this node's knowledge of the function is checked; a member that has none says so in its node-gone.
      if (scope.targets.self) knownFunction(name);
      const local = scope.targets.self ? localFollow(store, query, () => stream.end()) : undefined;
      const stream = new FollowStream({ outgoing: c.env.outgoing, sse, log, function: name });
      cluster!.follow({ targets: scope.targets, local, path: remotePath(path, { ...params, follow: '1' }), stream, limit: query.limit });
      return RESPONSE_ALREADY_SENT;
    }
    const gathered = await cluster!.gather({
      targets: scope.targets,
      local: () => (knows(name) ? store.lines(query).map(view) : undefined),
      path: remotePath(path, params),
      key: 'lines',
      time: (line: LogLine) => line.time,
      newestFirst: false,
      limit: query.limit,
    });
    if (!gathered.known) knownFunction(name, gathered.missing);
    return c.json({ lines: gathered.items, missing: gathered.missing });
  });

  api.get('/functions/:name/invocations', async (c) => {
    const name = c.req.param('name');
    const outcome = c.req.query('outcome');
    if (outcome !== undefined && !/^[A-Z][A-Z_]{0,63}$/.test(outcome)) {
      throw new FnixError('BAD_REQUEST', `outcome=${JSON.stringify(outcome.slice(0, 80))}: expected OK or an error code, such as FUNCTION_FAILED`);
    }
    const query = { function: name, sinceMs: parseSince(c.req.query('since')), limit: parseLimit(c.req.query('limit')), outcome };
    const scope = scopeOf(c);
    if (scope.kind !== 'gather') {
      knownFunction(name);
      const invocations = store.invocations(query);
      return c.json({ invocations: scope.kind === 'local' ? invocations.map((record) => ({ ...record, node: scope.node })) : invocations });
    }
    const since = query.sinceMs === undefined ? undefined : new Date(query.sinceMs).toISOString();
    const gathered = await cluster!.gather({
      targets: scope.targets,
      local: () => (knows(name) ? store.invocations(query) : undefined),
      path: remotePath(`/functions/${encodeURIComponent(name)}/invocations`, { since, limit: String(query.limit), outcome }),
      key: 'invocations',
      time: (record: InvocationRecord) => record.startedAt,
      newestFirst: true,
      limit: query.limit,
    });
    if (!gathered.known) knownFunction(name, gathered.missing);
    return c.json({ invocations: gathered.items, missing: gathered.missing });
  });

  api.get('/invocations/:id', async (c) => {
    const id = parseId(c.req.param('id'), 'id') ?? '';
    const scope = scopeOf(c);
    const local = async () => {
      // An invocation that has just ended (its error response is out) has its record written a moment later.
      await store.waitFor(id, RECORD_WAIT_MS);
      const found = store.invocation(id);
      return found && { invocation: found.invocation, lines: found.lines.map(view) };
    };
    if (scope.kind !== 'gather') {
      const found = await local();
      if (!found) throw notRecorded(id, scope.kind === 'local' ? scope.node : undefined, []);
      if (scope.kind === 'single') return c.json(found);
      return c.json(labelInvocation(found, scope.node));
    }
    const answer = await cluster!.find<{ invocation: InvocationRecord; lines: LogLine[] }>(
      scope.targets,
      local,
      remotePath(`/invocations/${encodeURIComponent(id)}`, {}),
    );
    if (!('found' in answer)) {
      const { self, remotes } = scope.targets;
      const where = self && remotes.length === 0 ? cluster!.self : !self && remotes.length === 1 ? remotes[0]!.name : 'any node';
      throw notRecorded(id, where, answer.missing);
    }
    return c.json(labelInvocation(answer.found, answer.node));
  });
  return api;
}

/** An invocation's answer, its record and lines labelled with `node`, and `node` beside them. */
function labelInvocation(found: { invocation: InvocationRecord; lines: LogLine[] }, node: string) {
  const lines = Array.isArray(found.lines) ? found.lines : [];
  return { node, invocation: { ...found.invocation, node }, lines: lines.map((line) => ({ ...line, node })) };
}

/** INVOCATION_NOT_FOUND, naming the nodes asked (`where`) and those that did not answer. */
function notRecorded(id: string, where: string | undefined, missing: Missing[]): FnixError {
  const on = where ? ` on ${where}` : '';
  const unanswered = missing.length ? `; ${missingText(missing)}, and may have it` : '';
  return new FnixError(
    'INVOCATION_NOT_FOUND',
    `no invocation ${JSON.stringify(id)} is recorded${on}: it is still running, or older than the records kept (docs/logs.md)${unanswered}`,
    { details: missing.length ? { invocationId: id, missing } : { invocationId: id } },
  );
}

/** `n2 did not answer (no answer within 2 s)`, for messages. */
function missingText(missing: Missing[]): string {
  return missing.map((m) => `${m.node} did not answer (${m.error})`).join('; ');
}

/**
 * Streams `query`'s recent lines, then every new one, until the client goes (or is too slow, or the
 * store closes). `marker`: after the recent lines, an event `{"event":"live"}`, so that a gathering
 * node knows where this node's recent lines end (logs-cluster.ts).
 */
function followLines(options: {
  store: RecordStore;
  log: Logger;
  c: Context<{ Bindings: HttpBindings }>;
  query: LinesQuery;
  sse: boolean;
  label: (line: LogLine) => object;
  marker: boolean;
}): void {
  const { query, label } = options;
  // Throws NO_CAPACITY before anything is written: the app's error handler answers.
  const local = localFollow(options.store, query, () => stream.end());
  const stream = new FollowStream({ outgoing: options.c.env.outgoing, sse: options.sse, log: options.log, function: query.function });
  stream.onClose(() => local.close());
  for (const line of local.recent) stream.line(label(line));
  if (options.marker) stream.event('live');
  local.live((line) => stream.line(label(line)));
}

/** A flag parameter: set, and not `0` or `false`. */
function isOn(raw: string | undefined): boolean {
  return raw !== undefined && raw !== '0' && raw !== 'false';
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
