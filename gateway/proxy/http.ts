/**
 * @module
 * `ANY /fn/<name>/<rest>` of a serve function: the request goes to one of its instances as an HTTP
 * request (method, `/<rest>` with the query, the headers with the forwarding ones, the body streamed),
 * and the server's status, headers and body stream back. Errors before the response head are thrown,
 * for the app's one error handler to answer; after it, the client connection is aborted, so that a
 * truncated body is never taken for a whole one.
 *
 * Limits: FNIX_MAX_BODY on the request body, FNIX_MAX_OUTPUT on the response body, the manifest's
 * timeoutMs from the request to the response's end (an instance at concurrency 1 that passes it is
 * replaced). A client that goes away aborts the request to the server.
 */
import type { Context } from 'hono';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FnixError } from '../../runtime/errors.ts';
import type { FunctionRegistry } from '../../runtime/functions/registry.ts';
import type { FunctionVersion } from '../../runtime/functions/version.ts';
import type { Logger } from '../../runtime/log.ts';
import { isRetired } from '../../runtime/serve/group.ts';
import type { ServeInstances, Slot } from '../../runtime/serve/instances.ts';
import { bodyTooLarge } from '../errors.ts';
import type { GatewayMetrics } from '../metrics/metrics.ts';
import { INVOCATION_ID_HEADER, type GatewayEnv } from '../routes/invoke.ts';
import { requestHeaders, responseHeaders, upstreamPath } from './headers.ts';
import { upstreamOf } from './upstream.ts';

/** How long a request whose connection broke waits to learn whether the server died (and of what). */
const CRASH_WAIT_MS = 1000;

/** What the proxy needs. */
export interface ServeProxyOptions {
  registry: FunctionRegistry;
  instances: ServeInstances;
  maxBody: number;
  /** FNIX_MAX_OUTPUT: response body bytes at most. */
  maxOutput: number;
  log: Logger;
  metrics: GatewayMetrics;
}

/** Takes a slot in an instance of `fn`; when `fn` was replaced under the request, in the version served now. */
export async function acquireServed(instances: ServeInstances, registry: FunctionRegistry, fn: FunctionVersion, signal: AbortSignal): Promise<Slot> {
  try {
    return await instances.acquire(fn, signal);
  } catch (error) {
    if (!isRetired(error)) throw error;
    const now = registry.get(fn.name);
    if (now.key === fn.key || !now.manifest.serve) throw error;
    return instances.acquire(now, signal);
  }
}

/** Creates the handler that passes a serve function's requests to its instances. */
export function createServeProxy(options: ServeProxyOptions) {
  const { registry, instances, maxBody, maxOutput, log, metrics } = options;
  return async function proxy(c: Context<GatewayEnv>, fn: FunctionVersion): Promise<Response> {
    const begin = performance.now();
    const id = c.get('invocationId');
    const { incoming, outgoing } = c.env;
    const declared = incoming.headers['content-length'];
    if (declared !== undefined && Number(declared) > maxBody) {
      metrics.invocationRefused(fn.name, 'http', 'BODY_TOO_LARGE', 0);
      throw bodyTooLarge(maxBody);
    }
    const abort = new AbortController();
    // Why the request was stopped, when the gateway stopped it: that, not undici's view of it, is the outcome.
    let stopped: FnixError | undefined;
    const stop = (error: FnixError) => {
      stopped ??= error;
      abort.abort(stopped);
    };
    const onClientGone = () => {
      if (!outgoing.writableFinished) stop(new FnixError('INVOCATION_ABORTED', `function '${fn.name}' was asked for by a client that went away`));
    };
    outgoing.once('close', onClientGone);

    let slot: Slot;
    try {
      slot = await acquireServed(instances, registry, fn, abort.signal);
    } catch (error) {
      outgoing.off('close', onClientGone);
      metrics.invocationRefused(fn.name, 'http', (error as FnixError).code ?? 'INTERNAL_ERROR', performance.now() - begin);
      throw error;
    }
    const { instance } = slot;
    const served = instance.fn;
    const timer = setTimeout(
      () =>
        stop(
          new FnixError('FUNCTION_TIMEOUT', `function '${served.name}' did not answer within its timeoutMs of ${served.manifest.timeoutMs} ms`, {
            details: { function: served.name, invocationId: id, instance: instance.id },
          }),
        ),
      served.manifest.timeoutMs,
    );
    let headMs: number | undefined;
    let status = 0;
    const finish = (error: FnixError | undefined) => {
      clearTimeout(timer);
      outgoing.off('close', onClientGone);
      const outcome = error?.code ?? 'OK';
      // At concurrency 1, a server that did not answer in time would make the next request wait too.
      slot.release({ replace: outcome === 'FUNCTION_TIMEOUT' && instance.settings.concurrency === 1 });
      const totalMs = performance.now() - begin;
      metrics.invocationEnded({ function: served.name, kind: 'http', outcome, totalMs, firstByteMs: headMs, cold: false });
      log.info('invocation', { function: served.name, id, outcome, status, ms: totalMs.toFixed(1), instance: instance.id });
    };

    const body = requestBody(c, maxBody, stop);
    let response: Awaited<ReturnType<ReturnType<typeof upstreamOf>['request']>>;
    try {
      response = await upstreamOf(instance).request({
        method: incoming.method as 'GET',
        path: upstreamPath(incoming.url ?? '/'),
        headers: requestHeaders({ incoming, invocationId: id }),
        body,
        signal: abort.signal,
      });
    } catch (error) {
      const failure = stopped ?? (await explain(error, slot, served));
      finish(failure);
      throw failure;
    }
    headMs = performance.now() - begin;
    status = response.statusCode;
    const headers = responseHeaders(response.headers);
    headers[INVOCATION_ID_HEADER] = id;
    outgoing.writeHead(response.statusCode, headers);
    // A response whose body is slow to come still shows its head at once (a stream, say).
    const flush = setImmediate(() => outgoing.flushHeaders());
    let written = 0;
    const limit = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        clearImmediate(flush);
        written += chunk.length;
        if (written > maxOutput) {
          stop(new FnixError('OUTPUT_LIMIT', `function '${served.name}' answered with more than ${maxOutput} bytes`));
          callback(stopped);
          return;
        }
        callback(null, chunk);
      },
    });
    void pipeline(response.body, limit, outgoing).then(
      () => finish(undefined),
      async (error: unknown) => {
        clearImmediate(flush);
        // The head is out: a broken body can only be told by a connection that does not end cleanly.
        outgoing.destroy();
        finish(stopped ?? (await explain(error, slot, served)));
      },
    );
    return RESPONSE_ALREADY_SENT;
  };
}

/**
 * The request body as a stream for the server, counted against FNIX_MAX_BODY; undefined when the
 * request has none. Past the limit the request is stopped with BODY_TOO_LARGE.
 */
function requestBody(c: Context<GatewayEnv>, maxBody: number, stop: (error: FnixError) => void): Transform | undefined {
  const { incoming } = c.env;
  const { headers } = incoming;
  if (headers['transfer-encoding'] === undefined && (headers['content-length'] === undefined || headers['content-length'] === '0')) return undefined;
  let total = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      total += chunk.length;
      if (total > maxBody) {
        const error = bodyTooLarge(maxBody);
        stop(error);
        callback(error);
        // The rest is read and dropped, so that the 413 can be sent.
        incoming.unpipe(counter);
        incoming.resume();
        return;
      }
      callback(null, chunk);
    },
  });
  incoming.pipe(counter);
  incoming.once('aborted', () => counter.destroy(new Error('the client went away')));
  return counter;
}

/** What a request that failed at the server gets: the server's end when it died, else what was wrong. */
async function explain(error: unknown, slot: Slot, fn: FunctionVersion): Promise<FnixError> {
  if (error instanceof FnixError) return error;
  const code = (error as { code?: string }).code ?? '';
  const message = (error as Error).message ?? String(error);
  const ended = await slot.instance.endWithin(code.startsWith('HPE_') ? 0 : CRASH_WAIT_MS);
  if (ended) return ended;
  const what = code.startsWith('HPE_') ? `answered with something that is not HTTP (${message})` : `closed the connection without an answer (${message})`;
  return new FnixError('FUNCTION_BAD_RESPONSE', `function '${fn.name}'s server ${what}`, {
    details: { function: fn.name, instance: slot.instance.id },
    cause: error,
  });
}
