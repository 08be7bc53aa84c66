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
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { Transform } from 'node:stream';
import type { Dispatcher } from 'undici';
import { FnixError } from '../../runtime/errors.ts';
import type { FunctionRegistry } from '../../runtime/functions/registry.ts';
import type { FunctionVersion } from '../../runtime/functions/version.ts';
import type { Logger } from '../../runtime/log.ts';
import type { Recorder } from '../../runtime/records/recorder.ts';
import { isRetired } from '../../runtime/serve/group.ts';
import type { ServeInstances, Slot } from '../../runtime/serve/instances.ts';
import type { KeyGuard } from '../auth/keys/guard.ts';
import { bodyTooLarge } from '../errors.ts';
import type { GatewayMetrics } from '../metrics/metrics.ts';
import { initOf } from '../routes/function-response.ts';
import { INVOCATION_ID_HEADER, type GatewayEnv } from '../routes/invoke.ts';
import { requestHeaders, responseHeaders, upstreamPath } from './headers.ts';
import { upstreamOf } from './upstream.ts';

/** How long the head of a response of known length waits for its body before it is sent alone. */
const HEAD_HOLD_MS = 5;

function flushHead(outgoing: ServerResponse): void {
  outgoing.flushHeaders();
}

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
  /**
   * Checks the key again when a queued request moves to the version served now, which may be private
   * when the one it was checked against was not (gateway/auth/keys/guard.ts).
   */
  keys: Pick<KeyGuard, 'check'>;
  /** Where each request's record goes (kind `serve`, with its instance). @default none */
  records?: Recorder | undefined;
}

/**
 * Takes a slot in an instance of `fn`; when `fn` was replaced under the request, in the version served
 * now, once `admit` has let the request into it: the request's key was checked against `fn`'s manifest,
 * and the version served now may be private when `fn` was not (admit throws to refuse it).
 */
export async function acquireServed(
  instances: ServeInstances,
  registry: FunctionRegistry,
  fn: FunctionVersion,
  signal: AbortSignal,
  admit: (now: FunctionVersion) => void,
): Promise<Slot> {
  try {
    return await instances.acquire(fn, signal);
  } catch (error) {
    if (!isRetired(error)) throw error;
    // The version served now: another one, or the same served again by a group of its own (a rollback).
    const now = registry.get(fn.name);
    if (!now.manifest.serve) throw error;
    admit(now);
    return instances.acquire(now, signal);
  }
}

/** The codes of the key check's refusals, which add no series with the function's label. */
const KEY_REFUSALS = new Set(['KEY_REQUIRED', 'KEY_INVALID', 'AUTH_RATE_LIMITED']);

/** Creates the handler that passes a serve function's requests to its instances. */
export function createServeProxy(options: ServeProxyOptions) {
  const { registry, instances, maxBody, maxOutput, log, metrics, keys, records } = options;
  return async function proxy(c: Context<GatewayEnv>, fn: FunctionVersion): Promise<Response> {
    const begin = performance.now();
    const startedAt = Date.now();
    const id = c.get('invocationId');
    const { incoming, outgoing } = c.env;
    const declared = incoming.headers['content-length'];
    if (declared !== undefined && Number(declared) > maxBody) {
      metrics.invocationRefused(fn.name, 'http', 'BODY_TOO_LARGE', 0);
      records?.refused({ id, fn, kind: 'serve', outcome: 'BODY_TOO_LARGE', startedAt, waitMs: 0 });
      throw bodyTooLarge(maxBody);
    }
    records?.started(id);
    // A free slot is taken at once; only a request that must wait needs a signal for its client leaving.
    let slot = instances.tryAcquire(fn);
    if (!slot) {
      const waiting = new AbortController();
      const onClientGone = () => waiting.abort(new FnixError('INVOCATION_ABORTED', 'the client went away while its request waited for an instance'));
      outgoing.once('close', onClientGone);
      // The same check the route made (routes/invoke.ts), against the version the request moves to.
      const admit = (now: FunctionVersion) =>
        void keys.check({ fn: now, headers: incoming.headers, address: incoming.socket.remoteAddress ?? '', route: 'invoke' });
      try {
        slot = await acquireServed(instances, registry, fn, waiting.signal, admit);
      } catch (error) {
        const code = (error as FnixError).code ?? 'INTERNAL_ERROR';
        if (!KEY_REFUSALS.has(code)) metrics.invocationRefused(fn.name, 'http', code, performance.now() - begin);
        records?.refused({ id, fn, kind: 'serve', outcome: code, startedAt, waitMs: performance.now() - begin });
        throw error;
      } finally {
        outgoing.off('close', onClientGone);
      }
    }
    const taken = slot;
    const { instance } = taken;
    const served = instance.fn;
    // One request at a time: the server's output lines while it lasts are this request's.
    const alone = instance.settings.concurrency === 1;
    if (alone) instance.beginRequest(id);
    const bodyBytes = { count: 0 };
    // Hono answers HEAD by running the GET route and making its response anew (hono-base's dispatch),
    // which loses RESPONSE_ALREADY_SENT: a HEAD's head goes back through Hono instead.
    const headOnly = incoming.method === 'HEAD';
    const exchange = new Exchange({ outgoing, id, maxOutput, fn: served, headOnly });
    const onClientGone = () => {
      if (!outgoing.writableFinished) exchange.stop(new FnixError('INVOCATION_ABORTED', `function '${served.name}' was asked for by a client that went away`));
    };
    outgoing.once('close', onClientGone);
    const timer = setTimeout(
      () =>
        exchange.stop(
          new FnixError('FUNCTION_TIMEOUT', `function '${served.name}' did not answer within its timeoutMs of ${served.manifest.timeoutMs} ms`, {
            details: { function: served.name, invocationId: id, instance: instance.id },
          }),
        ),
      served.manifest.timeoutMs,
    );
    // What went wrong, worked out once: the client's answer (before the head) and the count share it.
    const outcome = exchange.ended.then(async (failure) => failure && (exchange.stopped ?? (await explain(failure, taken, served))));
    void outcome.then((error) => {
      clearTimeout(timer);
      outgoing.off('close', onClientGone);
      // The head is out: a broken body can only be told by a connection that does not end cleanly.
      if (error && exchange.headSent) outgoing.destroy();
      const outcome = error?.code ?? 'OK';
      if (alone) instance.endRequest(id);
      // At concurrency 1, a server that did not answer in time would make the next request wait too.
      taken.release({ replace: outcome === 'FUNCTION_TIMEOUT' && instance.settings.concurrency === 1 });
      const totalMs = performance.now() - begin;
      metrics.invocationEnded({ function: served.name, kind: 'http', outcome, totalMs, firstByteMs: exchange.headMs && exchange.headMs - begin, cold: false });
      log.info('invocation', { function: served.name, id, outcome, status: exchange.status, ms: totalMs.toFixed(1), instance: instance.id });
      records?.ended({
        id,
        fn: served,
        kind: 'serve',
        startedAt,
        durationMs: totalMs,
        outcome,
        // The server's status once its head went out (or a HEAD's, answered whole); else the error's.
        status: exchange.headSent || !error ? exchange.status : undefined,
        bytesIn: bodyBytes.count,
        bytesOut: exchange.written,
        instance: instance.id,
        container: instance.containerName,
      });
    });
    upstreamOf(instance).dispatch(
      {
        method: incoming.method as 'GET',
        path: upstreamPath(incoming.url ?? '/'),
        headers: requestHeaders({ incoming, invocationId: id }),
        body: requestBody(c, maxBody, (error) => exchange.stop(error), bodyBytes),
      },
      exchange,
    );
    // Resolves once the head is written (the body follows by itself); rejects with what went wrong before.
    if (await (headOnly ? exchange.ended : exchange.headOrFailure)) throw await outcome;
    if (headOnly) return new Response(null, { status: exchange.status, headers: initOf(exchange.head, true) });
    return RESPONSE_ALREADY_SENT;
  };
}

/** What an {@link Exchange} writes to, and within which limit. */
interface ExchangeOptions {
  outgoing: ServerResponse;
  id: string;
  maxOutput: number;
  fn: FunctionVersion;
  /** A HEAD: the head is kept in {@link Exchange.head} for the route to answer with, not written. */
  headOnly: boolean;
}

/**
 * One request to a server, as undici's dispatcher drives it: the server's head and body are written to
 * the client as they come, with backpressure both ways (a slow client pauses the server's connection).
 */
class Exchange implements Dispatcher.DispatchHandler {
  /** Why the gateway stopped the request, when it did. */
  stopped: FnixError | undefined;
  headSent = false;
  headMs: number | undefined;
  status = 0;
  /** The response headers for the client (those of a HEAD, which are not written here). */
  head: Record<string, string | string[]> = {};
  /** Settles once the head is written (undefined) or the request failed before it (the error). */
  readonly headOrFailure: Promise<Error | undefined>;
  /** Settles once the response has ended (undefined) or failed (the error). */
  readonly ended: Promise<Error | undefined>;
  readonly #options: ExchangeOptions;
  #controller: Dispatcher.DispatchController | undefined;
  #written = 0;
  #settleHead!: (failure: Error | undefined) => void;
  #settleEnd!: (failure: Error | undefined) => void;
  /** Response body bytes passed to the client. */
  get written(): number {
    return this.#written;
  }
  #flush: { immediate: NodeJS.Immediate } | { timer: NodeJS.Timeout } | undefined;
  #done = false;

  constructor(options: ExchangeOptions) {
    this.#options = options;
    this.headOrFailure = new Promise((resolve) => (this.#settleHead = resolve));
    this.ended = new Promise((resolve) => (this.#settleEnd = resolve));
  }

  /** Stops the request with `error` (the first given is the one reported). */
  stop(error: FnixError): void {
    this.stopped ??= error;
    if (this.#controller) this.#controller.abort(error);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.stopped) controller.abort(this.stopped);
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    const { outgoing, id } = this.#options;
    this.status = statusCode;
    this.headMs = performance.now();
    const out = responseHeaders(headers);
    out[INVOCATION_ID_HEADER] = id;
    this.head = out;
    if (this.#options.headOnly) return;
    outgoing.writeHead(statusCode, out);
    this.headSent = true;
    // A body that is slow to come still lets the client see the head soon (a stream, say). One of a
    // known length nearly always follows at once, and goes out with the head in one write.
    this.#flush =
      headers['content-length'] === undefined ? { immediate: setImmediate(flushHead, outgoing) } : { timer: setTimeout(flushHead, HEAD_HOLD_MS, outgoing) };
    this.#settleHead(undefined);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const { outgoing, maxOutput, fn } = this.#options;
    this.#written += chunk.length;
    if (this.#written > maxOutput) {
      this.stop(new FnixError('OUTPUT_LIMIT', `function '${fn.name}' answered with more than ${maxOutput} bytes`));
      return;
    }
    this.#cancelFlush();
    if (!outgoing.write(chunk)) {
      controller.pause();
      outgoing.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    this.#cancelFlush();
    if (!this.#options.headOnly) this.#options.outgoing.end();
    this.#finish(undefined);
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.#cancelFlush();
    this.#finish(error);
  }

  #cancelFlush(): void {
    const flush = this.#flush;
    this.#flush = undefined;
    if (flush && 'immediate' in flush) clearImmediate(flush.immediate);
    else if (flush) clearTimeout(flush.timer);
  }

  #finish(failure: Error | undefined): void {
    if (this.#done) return;
    this.#done = true;
    this.#settleHead(failure);
    this.#settleEnd(failure);
  }
}

/**
 * The request body as a stream for the server, counted against FNIX_MAX_BODY; undefined when the
 * request has none. Past the limit the request is stopped with BODY_TOO_LARGE.
 */
function requestBody(c: Context<GatewayEnv>, maxBody: number, stop: (error: FnixError) => void, counted: { count: number }): Transform | undefined {
  const { incoming } = c.env;
  const { headers } = incoming;
  if (headers['transfer-encoding'] === undefined && (headers['content-length'] === undefined || headers['content-length'] === '0')) return undefined;
  let total = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      total += chunk.length;
      counted.count = total;
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
  const message = (error as Error).message ?? String(error);
  const notHttp = isNotHttp(error);
  const ended = await slot.instance.endWithin(notHttp ? 0 : CRASH_WAIT_MS);
  if (ended) return ended;
  const what = notHttp ? `answered with something that is not HTTP (${message})` : `closed the connection without an answer (${message})`;
  return new FnixError('FUNCTION_BAD_RESPONSE', `function '${fn.name}': its server ${what}`, {
    details: { function: fn.name, instance: slot.instance.id },
    cause: error,
  });
}

/**
 * Whether undici failed on what the server sent rather than on the connection: its parser's errors
 * (HTTPParserError, whose code undici 7 leaves undefined) and a head over maxHeaderSize.
 */
function isNotHttp(error: unknown): boolean {
  const code = (error as { code?: string }).code ?? '';
  return (error as Error).name === 'HTTPParserError' || code.startsWith('HPE_') || code === 'UND_ERR_HEADERS_OVERFLOW';
}
