/**
 * @module
 * The gateway's connections to a serve function's instances: one undici Pool per instance, bounded to
 * its `concurrency`, keeping connections alive between requests. A new connection is a relay opened
 * by the instance's agent (runtime/container/relay.ts); the pool goes when the instance ends.
 *
 * undici rather than node:http's client: its pool never opens more connections than it is given
 * (a single-threaded server, such as Python's http.server, would wait forever on a second one while
 * the first is kept alive), and it costs less per request.
 */
import { Pool } from 'undici';
import type { ServeInstance } from '../../runtime/serve/instance.ts';

const pools = new WeakMap<ServeInstance, Pool>();

/** The connection pool of `instance`, made on first use. */
export function upstreamOf(instance: ServeInstance): Pool {
  let pool = pools.get(instance);
  if (pool) return pool;
  pool = new Pool('http://function.invalid', {
    connections: instance.settings.concurrency,
    pipelining: 1,
    // The request's own timeoutMs applies (gateway/proxy/http.ts); undici's would cut a slow stream.
    headersTimeout: 0,
    bodyTimeout: 0,
    // An idle connection is closed after 4 s, or sooner when the server says (Keep-Alive: timeout=N):
    // before a server that keeps one no longer than that closes it under a request being sent.
    keepAliveTimeout: 4_000,
    maxHeaderSize: 64 * 1024,
    connect: (_options, callback) => {
      instance.connect().then(
        (socket) => callback(null, socket),
        (error: Error) => callback(error, null),
      );
    },
  });
  pools.set(instance, pool);
  const made = pool;
  void instance.ended.then(() => made.destroy().catch(() => {}));
  return pool;
}
