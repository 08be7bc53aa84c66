/**
 * @module
 * `ANY /fn/<name>` and `ANY /fn/<name>/<rest>`: runs the function with the request body on stdin and
 * the CGI variables in its environment, and streams its stdout back. A serve function's requests go
 * to its own server instead (gateway/proxy/http.ts).
 */
import type { HttpBindings } from '@hono/node-server';
import type { Context } from 'hono';
import type { FunctionRegistry } from '../../runtime/functions/registry.ts';
import type { FunctionVersion } from '../../runtime/functions/version.ts';
import type { Invocation } from '../../runtime/invocation/invocation.ts';
import type { Logger } from '../../runtime/log.ts';
import type { Recorder } from '../../runtime/records/recorder.ts';
import type { Runner } from '../../runtime/runner.ts';
import { FnixError } from '../../runtime/errors.ts';
import { LineSplitter } from '../../runtime/stdio/line-splitter.ts';
import type { KeyGuard } from '../auth/keys/guard.ts';
import { buildCgiEnv } from '../cgi/env.ts';
import { bodyTooLarge } from '../errors.ts';
import type { GatewayMetrics } from '../metrics/metrics.ts';
import { respondWithInvocation } from './function-response.ts';
import { deliverBody } from './request-body.ts';

/** The Hono environment of the gateway's routes. */
export type GatewayEnv = { Bindings: HttpBindings; Variables: { invocationId: string } };

/** What the route needs. */
export interface InvokeRouteOptions {
  registry: FunctionRegistry;
  runner: Runner;
  maxBody: number;
  log: Logger;
  /** Told the outcome when the gateway itself answers with an error (a 413, a bad CGI response). */
  metrics: GatewayMetrics;
  /** Answers the requests of serve functions, which go to their own server (gateway/proxy/http.ts). */
  serve: (c: Context<GatewayEnv>, fn: FunctionVersion) => Promise<Response>;
  /** Refuses requests to private functions without a key that opens them (gateway/auth/keys/guard.ts). */
  keys: Pick<KeyGuard, 'check'>;
  /** Keeps the invocations' stderr lines, and their status and body bytes for their records (the runner writes them). */
  records?: Recorder | undefined;
}

/** The header that carries the invocation id on every /fn response. */
export const INVOCATION_ID_HEADER = 'x-fnix-invocation-id';

/** Creates the handler for /fn/<name>[/<rest>]. */
export function createInvokeHandler(options: InvokeRouteOptions) {
  const { registry, runner, maxBody, log, metrics } = options;
  return async function invoke(c: Context<GatewayEnv>): Promise<Response> {
    const id = c.get('invocationId');
    const name = c.req.param('name') ?? '';
    const fn = registry.get(name);
    // Before anything is taken or counted by function: a refused request adds no series.
    options.keys.check({ fn, headers: c.env.incoming.headers, address: c.env.incoming.socket.remoteAddress ?? '', route: 'invoke' });
    if (fn.manifest.serve) return options.serve(c, fn);
    const incoming = c.env.incoming;
    // Node's own view of the request throughout: the fetch Request (and its Headers, URL and body
    // stream) is never made on this path.
    const declared = incoming.headers['content-length'];
    if (declared !== undefined && Number(declared) > maxBody) {
      metrics.invocationRefused(fn.name, 'http', 'BODY_TOO_LARGE', 0);
      options.records?.refused({ id, fn, kind: 'http', outcome: 'BODY_TOO_LARGE', startedAt: Date.now(), waitMs: 0 });
      throw bodyTooLarge(maxBody);
    }

    const url = new URL(c.req.url);
    const scriptName = `/fn/${name}`;
    // The rest of the path after /fn/<name>, cut from the raw path (the name may be percent-encoded there).
    const pathInfo = url.pathname.replace(/^\/fn\/[^/]*/, '');
    const socket = incoming.socket;
    const env = buildCgiEnv({
      method: c.req.method,
      pathInfo,
      query: url.search.slice(1),
      scriptName,
      headers: incoming.headers,
      requestUri: incoming.url ?? url.pathname + url.search,
      serverName: url.hostname,
      serverPort: String(socket.localPort ?? ''),
      remoteAddr: socket.remoteAddress ?? '',
      remotePort: String(socket.remotePort ?? ''),
    });

    const { invocation, lease } = await runner.invoke({ fn, id, env, signal: c.req.raw.signal });
    logStderr(invocation, log);
    const { records } = options;
    if (records) keepStderr(invocation, records);
    // Logged with what the client got, as counted: the gateway's own answer (a 413, a bad CGI head) when it gave one.
    void metrics.settled(invocation).then(({ result, outcome }) =>
      log.info('invocation', {
        function: fn.name,
        id,
        outcome,
        exitCode: result.exitCode,
        signal: result.signal,
        ms: result.durationMs.toFixed(1),
        cold: lease.coldStart,
        container: lease.container.name,
      }),
    );
    const body = deliverBody(incoming, invocation, maxBody, records && ((bytesIn) => records.note(id, { bytesIn })));
    const responding = respondWithInvocation({
      invocation,
      body,
      cgi: fn.manifest.cgi,
      maxBody,
      headers: { [INVOCATION_ID_HEADER]: id },
      method: c.req.method,
      abortConnection: () => c.env.outgoing.destroy(),
    }).catch((error: unknown) => {
      // The gateway answers with an error of its own: that is the outcome, whatever the function did.
      if (error instanceof FnixError) metrics.overrideOutcome(invocation, error.code);
      invocation.kill('aborted'); // nothing will read its output: it must not run on to its timeout
      throw error;
    });
    // Noted before the decision is awaited by the record's writer (metrics.settled).
    if (records) {
      responding.then(
        (response) => records.note(id, { status: response.status }),
        () => {},
      );
    }
    metrics.deciding(invocation, responding);
    return responding;
  };
}

/** Keeps the function's stderr in the records store, a line at a time (the store's rate budget bounds it), its secrets masked. */
function keepStderr(invocation: Invocation, records: Recorder): void {
  const lines = records.tap({ function: invocation.functionName, invocationId: invocation.id, stream: 'stderr' }, (line) => invocation.mask(line));
  invocation.stderr.on('data', (chunk: Buffer) => lines.write(chunk));
  invocation.stderr.on('end', () => lines.end());
}

/** Sends the function's stderr to the log, a line at a time, prefixed with function and invocation. */
function logStderr(invocation: Invocation, log: Logger): void {
  const prefix = `[${invocation.functionName} ${invocation.id}]`;
  // Its secrets' values masked (runtime/secrets/mask.ts): the log is fnix's, not the function's caller's.
  const lines = new LineSplitter({ onLine: (line) => log.info(`${prefix} ${invocation.mask(line)}`) });
  invocation.stderr.on('data', (chunk: Buffer) => lines.write(chunk));
  invocation.stderr.on('end', () => lines.end());
}
