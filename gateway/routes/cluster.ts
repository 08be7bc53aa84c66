/**
 * @module
 * A cluster node's own routes (docs/cluster.md):
 *
 *     GET /api/cluster               (deploy token) -> members, builder, live deployment, acknowledgements
 *     GET /cluster/builder           -> 200 on the elected builder, 503 elsewhere: HAProxy's check of /git/'s backend
 *     GET /cluster/cache/<file>      -> the builder's signed binary cache, in cache store mode (what nodes substitute from)
 *
 * `/cluster/` is for the nodes and the load balancer's checks; the generated HAProxy configuration
 * refuses it from clients (cluster/haproxy.ts). The cache holds store paths only, which Nix makes
 * world-readable anyway; a node checks every path's signature against FNIX_CACHE_PUBLIC_KEY.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Hono } from 'hono';
import type { Cluster } from '../../cluster/cluster.ts';
import { FnixError } from '../../runtime/errors.ts';
import type { TokenGuard } from '../auth/guard.ts';
import type { GatewayEnv } from './invoke.ts';

/** The names a Nix file binary cache holds: nix-cache-info, `<hash>.narinfo`, `nar/<hash>.nar[.zst|.xz]`, `log/…` excluded. */
const CACHE_FILE = /^(nix-cache-info|[0-9a-z]{32}\.narinfo|nar\/[0-9a-z]{52}\.nar(\.zst|\.xz|\.bz2)?)$/;

export function createClusterRoutes(options: { cluster: Cluster; token: TokenGuard }) {
  const { cluster, token } = options;
  const app = new Hono<GatewayEnv>();
  app.get('/api/cluster', async (c) => {
    token.bearer({ route: 'api', authorization: c.req.header('authorization'), address: c.env.incoming.socket.remoteAddress ?? '' });
    return c.json(await cluster.status());
  });
  app.get('/cluster/builder', (c) => {
    const builder = cluster.builder()?.name ?? null;
    return c.json({ node: cluster.self, builder }, cluster.isBuilder() ? 200 : 503);
  });
  app.get('/cluster/cache/*', async (c) => {
    const name = c.req.path.slice('/cluster/cache/'.length);
    const dir = cluster.cacheDir;
    if (!dir || !CACHE_FILE.test(name)) throw new FnixError('ROUTE_NOT_FOUND', `no cache file ${JSON.stringify(name.slice(0, 80))} here`);
    const path = join(dir, name);
    const info = await stat(path).catch(() => undefined);
    if (!info?.isFile()) throw new FnixError('ROUTE_NOT_FOUND', `no cache file ${JSON.stringify(name.slice(0, 80))} here`);
    const type = name.endsWith('.narinfo') || name === 'nix-cache-info' ? 'text/x-nix-narinfo' : 'application/x-nix-nar';
    const headers = { 'content-type': type, 'content-length': String(info.size) };
    // Hono answers HEAD with the GET handler, dropping the body: a stream opened for it would never be closed.
    if (c.req.method === 'HEAD') return new Response(null, { headers });
    return new Response(Readable.toWeb(createReadStream(path)) as ReadableStream, { headers });
  });
  return app;
}
