/**
 * @module
 * The layers import only downwards: runtime/ knows nothing of HTTP, deployments or the gateway;
 * deployments/ knows nothing of HTTP or the gateway; cli/ is a client of the HTTP API and shares no
 * code with the server but cluster/haproxy.ts, a pure function that imports nothing. Read from the
 * source, so that a stray import fails here rather than in a review.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

async function sources(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(join(ROOT, dir), { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await sources(path)));
    else if (/\.(ts|mjs)$/.test(entry.name)) found.push(path);
  }
  return found;
}

/** Each `from '...'` of the files under `dir` that `forbidden` matches, as `file: import`. */
async function importsOf(dir: string, forbidden: RegExp): Promise<string[]> {
  const found: string[] = [];
  for (const file of await sources(dir)) {
    const text = await readFile(join(ROOT, file), 'utf8');
    for (const [, target] of text.matchAll(/from '([^']+)'/g)) {
      const resolved = target!.startsWith('.') ? relative(ROOT, join(ROOT, file, '..', target!)) : target!;
      if (forbidden.test(resolved)) found.push(`${file}: ${target}`);
    }
  }
  return found;
}

describe('the layers', () => {
  it('runtime/ imports neither deployments/, cluster/, gateway/ nor anything HTTP', async () => {
    expect(await importsOf('runtime', /^(deployments|cluster|gateway)\/|^(hono|@hono\/|ws$)/)).toEqual([]);
  });

  it('deployments/ imports neither cluster/, gateway/ nor anything HTTP', async () => {
    expect(await importsOf('deployments', /^(cluster|gateway)\/|^(hono|@hono\/|ws$)/)).toEqual([]);
  });

  it('cluster/ imports neither gateway/ nor an HTTP server', async () => {
    expect(await importsOf('cluster', /^gateway\/|^(hono|@hono\/|ws$)/)).toEqual([]);
  });

  it('cli/ is a client: it imports neither runtime/, deployments/, gateway/ nor cluster/, but for its HAProxy generator', async () => {
    expect(await importsOf('cli', /^(runtime|deployments|gateway)\/|^cluster\/(?!haproxy\.ts$)/)).toEqual([]);
  });

  it('cluster/haproxy.ts, the one server module the CLI imports, imports nothing but types', async () => {
    const text = await readFile(join(ROOT, 'cluster/haproxy.ts'), 'utf8');
    expect([...text.matchAll(/^(?:import|export)\s+(?!type\s)[^;]*?from\s+'([^']+)'/gm)].map((m) => m[1])).toEqual([]);
  });
});
