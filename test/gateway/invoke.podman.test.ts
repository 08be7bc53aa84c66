/**
 * @module
 * The HTTP contract of /fn/<name>, against a real gateway, real containers and real Nix packages:
 * bodies, streaming, CGI variables and responses, every error status, limits and disconnects.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { request, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES_DIR, FIXTURES_DIR, functionsFrom, startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { pidsWithEnv, waitUntil } from '../helpers/processes.ts';

const MAX_BODY = 2 * 1024 * 1024;
const MAX_OUTPUT = 8 * 1024 * 1024;
let gateway: TestGateway;

beforeAll(async () => {
  gateway = await startTestGateway({
    functionsDir: await functionsFrom(EXAMPLES_DIR, FIXTURES_DIR),
    maxBody: MAX_BODY,
    maxOutput: MAX_OUTPUT,
  });
});
afterAll(async () => {
  await gateway?.close();
});

/** A raw HTTP request, so a test controls chunking, Content-Length and disconnects. */
function rawRequest(
  path: string,
  options: { method?: string; headers?: Record<string, string | number>; chunks?: Buffer[] } = {},
): Promise<{ res: IncomingMessage; body: Buffer; aborted: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request(`${gateway.url}${path}`, { method: options.method ?? 'POST', headers: options.headers }, (res) => {
      const parts: Buffer[] = [];
      let aborted = false;
      res.on('data', (chunk: Buffer) => parts.push(chunk));
      res.on('aborted', () => (aborted = true));
      res.on('error', () => (aborted = true));
      res.on('close', () => resolve({ res, body: Buffer.concat(parts), aborted: aborted || !res.complete }));
    });
    req.on('error', reject);
    for (const chunk of options.chunks ?? []) req.write(chunk);
    req.end();
  });
}

/** Buffer memory still referenced after a full garbage collection. */
function externalMemoryAfterGc(): number {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  gc();
  return process.memoryUsage().external;
}

async function errorOf(response: Response): Promise<Record<string, unknown>> {
  expect(response.headers.get('content-type')).toContain('application/json');
  const json = (await response.json()) as { error: Record<string, unknown> };
  return json.error;
}

describe('invoking a function over HTTP', () => {
  it('runs hello and tags the response with an invocation id', async () => {
    const response = await fetch(`${gateway.url}/fn/hello?name=Ada`);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('Hello, Ada! This is fnix.\n');
    expect(response.headers.get('x-fnix-invocation-id')).toMatch(/^[\w-]{21}$/);
  });

  it('answers 404 FUNCTION_NOT_FOUND for unknown and invalid names, with an invocation id', async () => {
    for (const path of ['/fn/nope', '/fn/Bad_Name', '/fn/..%2Fetc', '/fn/a.b/c']) {
      const response = await fetch(`${gateway.url}${path}`);
      expect(response.status, path).toBe(404);
      expect(response.headers.get('x-fnix-invocation-id'), path).toBeTruthy();
      expect((await errorOf(response)).code, path).toBe('FUNCTION_NOT_FOUND');
    }
  });

  it('echoes a 1 MiB random body byte-exact', async () => {
    const body = randomBytes(1024 * 1024);
    const response = await fetch(`${gateway.url}/fn/echo`, { method: 'POST', body });
    expect(response.status).toBe(200);
    expect(Buffer.from(await response.arrayBuffer()).equals(body)).toBe(true);
  });

  it('echoes a chunked body byte-exact, and logs stderr lines prefixed with function and invocation', async () => {
    const chunks = Array.from({ length: 40 }, (_, i) => randomBytes(1000 + i * 997));
    const { res, body } = await rawRequest('/fn/echo/some/path?q=1', { chunks });
    expect(res.statusCode).toBe(200);
    expect(res.headers['transfer-encoding']).toBe('chunked');
    expect(body.equals(Buffer.concat(chunks))).toBe(true);
    const id = res.headers['x-fnix-invocation-id'];
    await waitUntil(() => gateway.logs.some((l) => l.includes(`[echo ${id}] POST /some/path?q=1`)), 2000, 'the stderr line in the log');
  });

  it('refuses a body over FNIX_MAX_BODY with 413, by Content-Length and on the stream', async () => {
    const declared = await fetch(`${gateway.url}/fn/echo`, { method: 'POST', body: randomBytes(MAX_BODY + 1) });
    expect(declared.status).toBe(413);
    expect((await errorOf(declared)).code).toBe('BODY_TOO_LARGE');

    const chunks = Array.from({ length: 33 }, () => randomBytes(64 * 1024)); // 2.06 MiB, no Content-Length
    const chunked = await rawRequest('/fn/echo', { chunks });
    expect(chunked.res.statusCode).toBe(413);
    expect(JSON.parse(chunked.body.toString()).error.code).toBe('BODY_TOO_LARGE');
  });

  it('refuses an oversized chunked body with 413 even when the function does not read it', async () => {
    const chunks = Array.from({ length: 33 }, () => randomBytes(64 * 1024));
    const { res, body } = await rawRequest('/fn/hello', { chunks });
    expect(res.statusCode).toBe(413);
    expect(JSON.parse(body.toString()).error.code).toBe('BODY_TOO_LARGE');
  });

  it('streams a large output for a large body without waiting on the function to read it', async () => {
    const input = randomBytes(MAX_BODY - 1024);
    const begin = performance.now();
    const response = await fetch(`${gateway.url}/fn/base64`, { method: 'POST', body: input });
    const text = await response.text();
    expect(response.status).toBe(200);
    expect(Buffer.from(text.replace(/\n/g, ''), 'base64').equals(input)).toBe(true);
    expect(performance.now() - begin).toBeLessThan(5000);
  });

  it('answers at once a function that closes stdin without reading the body', async () => {
    const begin = performance.now();
    const response = await fetch(`${gateway.url}/fn/ignore-stdin`, { method: 'POST', body: randomBytes(1024 * 1024) });
    const reader = response.body!.getReader();
    const first = await reader.read();
    expect(Buffer.from(first.value!).toString()).toBe('first\n');
    expect(performance.now() - begin).toBeLessThan(800); // long before its second line, a second later
    let rest = '';
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += Buffer.from(r.value).toString();
    expect(rest).toBe('second\n');
  });

  it('never gives stdin more than Content-Length bytes when a client sends more', async () => {
    // A body limit that trusts Content-Length is bypassed by sending more than declared (Hono's
    // CVE-2025-59139 was of this kind). Node's parser stops the body at Content-Length, and what follows
    // is a malformed next request: the connection gets a 400, and the function never sees the excess.
    const payload = randomBytes(3 * 1024 * 1024);
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect(gateway.server.port, '127.0.0.1');
      const parts: Buffer[] = [];
      socket.on('data', (chunk) => parts.push(chunk));
      socket.on('close', () => resolve(Buffer.concat(parts).toString('latin1')));
      socket.on('error', reject);
      socket.write('POST /fn/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n');
      socket.end(payload);
    });
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1]);
    if (status === 200) {
      expect(
        Buffer.from(reply.slice(reply.indexOf('\r\n\r\n') + 4), 'latin1')
          .subarray(0, 200)
          .includes(payload.subarray(100, 132)),
      ).toBe(false);
    } else {
      expect(status).toBe(400);
    }
    expect(reply.length).toBeLessThan(64 * 1024);
  });

  it('sets the CGI/1.1 variables, FNIX_* and the manifest env', async () => {
    const body = 'a=1&b=2';
    const response = await fetch(`${gateway.url}/fn/env-dump/a/b%20c?x=1&y=%20`, {
      method: 'PUT',
      body,
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-custom-header': 'yes', proxy: 'http://evil:1' },
    });
    expect(response.status).toBe(200);
    const env = Object.fromEntries(
      (await response.text())
        .trim()
        .split('\n')
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
    expect(env).toMatchObject({
      GATEWAY_INTERFACE: 'CGI/1.1',
      REQUEST_METHOD: 'PUT',
      SCRIPT_NAME: '/fn/env-dump',
      PATH_INFO: '/a/b c',
      QUERY_STRING: 'x=1&y=%20',
      CONTENT_TYPE: 'application/x-www-form-urlencoded',
      CONTENT_LENGTH: String(body.length),
      HTTP_X_CUSTOM_HEADER: 'yes',
      FNIX_FUNCTION: 'env-dump',
      FNIX_INVOCATION_ID: response.headers.get('x-fnix-invocation-id'),
      GREETING: 'hi there',
      HOME: '/tmp',
    });
    expect(env['SERVER_PROTOCOL']).toBe('HTTP/1.1');
    expect(env['REMOTE_ADDR']).toBe('127.0.0.1');
    expect(env).not.toHaveProperty('HTTP_PROXY');
    expect(env['PATH']).toMatch(/^\/nix\/store\/[a-z0-9]{32}-busybox-static\/bin$/);
  });

  it('turns CGI response headers into the status and headers', async () => {
    const response = await fetch(`${gateway.url}/fn/teapot`, { method: 'DELETE' });
    expect(response.status).toBe(418);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.headers.get('x-fnix-invocation-id')).toBeTruthy();
    expect(await response.json()).toEqual({ short: true, stout: true, method: 'DELETE' });
  });

  it('keeps a repeated CGI header apart, on GET and HEAD, and takes any header name as a name', async () => {
    for (const method of ['GET', 'HEAD']) {
      const response = await fetch(`${gateway.url}/fn/cgi-headers`, { method });
      expect(response.status, method).toBe(200);
      expect(response.headers.getSetCookie(), method).toEqual(['a=1', 'b=2']);
      expect(response.headers.get('constructor'), method).toBe('c');
      expect(response.headers.get('tostring'), method).toBe('t');
      // On HEAD, @hono/node-server copies the headers into a plain object, where `__proto__` is lost.
      if (method === 'GET') expect(response.headers.get('__proto__'), method).toBe('p');
      expect(await response.text(), method).toBe(method === 'HEAD' ? '' : 'ok\n');
    }
  });

  it('transforms JSON with gojq, which the jq function declares', async () => {
    const response = await fetch(`${gateway.url}/fn/jq`, {
      method: 'POST',
      body: JSON.stringify({ items: [{ name: 'a' }, { name: 'b' }] }),
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ count: 2, names: ['a', 'b'] });
  });

  it('answers 502 FUNCTION_FAILED with the exit code and the tail of stderr', async () => {
    const response = await fetch(`${gateway.url}/fn/exit-3`);
    expect(response.status).toBe(502);
    const error = await errorOf(response);
    expect(error).toMatchObject({ code: 'FUNCTION_FAILED', exitCode: 3, function: 'exit-3' });
    expect(error['stderr']).toBe('something broke\n');
    expect(error['invocationId']).toBe(response.headers.get('x-fnix-invocation-id'));
  });

  it('answers 504 FUNCTION_TIMEOUT at timeoutMs, and the process is gone', async () => {
    const begin = performance.now();
    const response = await fetch(`${gateway.url}/fn/short-timeout`);
    const elapsed = performance.now() - begin;
    expect(response.status).toBe(504);
    expect((await errorOf(response)).code).toBe('FUNCTION_TIMEOUT');
    expect(elapsed).toBeGreaterThanOrEqual(650);
    const id = response.headers.get('x-fnix-invocation-id')!;
    expect(await pidsWithEnv('FNIX_INVOCATION_ID', id)).toEqual([]);
  });

  it('streams output as it is produced', async () => {
    const begin = performance.now();
    const response = await fetch(`${gateway.url}/fn/slow-lines`);
    const reader = response.body!.getReader();
    const arrivals: Array<[string, number]> = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      arrivals.push([Buffer.from(value).toString(), performance.now() - begin]);
    }
    expect(arrivals.map(([text]) => text).join('')).toBe('line 1\nline 2\nline 3\n');
    expect(arrivals[0]![1]).toBeLessThan(800); // the first line, long before the function ends
    expect(arrivals.at(-1)![1] - arrivals[0]![1]).toBeGreaterThan(1500);
  });

  it('aborts the transfer when the function fails after output began', async () => {
    const { res, body, aborted } = await rawRequest('/fn/partial-fail', { method: 'GET' });
    expect(res.statusCode).toBe(200);
    expect(body.toString()).toBe('partial\n');
    expect(aborted).toBe(true);
  });

  it('kills the function within a second of the client disconnecting', async () => {
    const token = `disconnect-${Date.now()}`;
    const req = request(`${gateway.url}/fn/forever?${token}`);
    req.on('error', () => {});
    req.end();
    await waitUntil(async () => (await pidsWithEnv('QUERY_STRING', token)).length > 0, 5000, 'the function to start');
    req.destroy();
    const elapsed = await waitUntil(async () => (await pidsWithEnv('QUERY_STRING', token)).length === 0, 3000, 'the processes to go');
    expect(elapsed).toBeLessThan(1000);
  });

  it('keeps functions from running what they did not declare', async () => {
    const response = await fetch(`${gateway.url}/fn/no-gojq`);
    expect(response.status).toBe(502);
    const error = await errorOf(response);
    expect(error['exitCode']).toBe(127);
    expect(error['stderr']).toMatch(/gojq: not found/);
  });

  it('says which interpreter is missing when a script cannot start', async () => {
    const response = await fetch(`${gateway.url}/fn/bad-shebang`);
    expect(response.status).toBe(502);
    const error = await errorOf(response);
    expect(error['exitCode']).toBe(127);
    expect(error['stderr']).toContain("env: 'python3': No such file or directory");
  });

  it('runs two functions at the same time', async () => {
    const begin = performance.now();
    const [a, b, hello] = await Promise.all([
      fetch(`${gateway.url}/fn/slow-lines`).then((r) => r.text()),
      fetch(`${gateway.url}/fn/slow-lines`).then((r) => r.text()),
      fetch(`${gateway.url}/fn/hello`).then(async (r) => [await r.text(), performance.now() - begin] as const),
    ]);
    expect(a).toBe('line 1\nline 2\nline 3\n');
    expect(b).toBe(a);
    expect(hello[0]).toContain('Hello');
    expect(hello[1]).toBeLessThan(2000); // not queued behind the slow ones
    expect(performance.now() - begin).toBeLessThan(5000); // 3 s each, run side by side
  });

  it('keeps the container when a client stops reading and then goes away', async () => {
    const token = `stall-${Date.now()}`;
    const name = await new Promise<string>((resolve, reject) => {
      const req = request(`${gateway.url}/fn/flood?${token}`, (res) => {
        res.pause(); // read nothing: the function blocks on a full pipe
        setTimeout(() => {
          req.destroy();
          resolve(String(res.headers['x-fnix-invocation-id']));
        }, 300);
      });
      req.on('error', () => {});
      req.on('timeout', reject);
      req.end();
    });
    const logLine = () => gateway.logs.find((l) => l.includes(`id=${name}`));
    await waitUntil(() => logLine() !== undefined, 3000, 'the invocation to end');
    expect(logLine()).toContain('outcome=INVOCATION_ABORTED');
    const container = /container=(\S+)/.exec(logLine()!)![1];
    // The agent drained and cleaned up: the next flood runs in the same container.
    const next = await rawRequest('/fn/flood', { method: 'GET' });
    const nextId = next.res.headers['x-fnix-invocation-id'];
    await waitUntil(() => gateway.logs.some((l) => l.includes(`id=${nextId}`)), 3000, 'the next invocation');
    expect(gateway.logs.find((l) => l.includes(`id=${nextId}`))).toContain(`container=${container}`);
  });

  it('stops a function at the output limit and aborts its response', async () => {
    const { res, body, aborted } = await rawRequest('/fn/flood', { method: 'GET' });
    expect(res.statusCode).toBe(200);
    expect(aborted).toBe(true);
    expect(body.length).toBeLessThanOrEqual(MAX_OUTPUT);
    const id = res.headers['x-fnix-invocation-id'];
    await waitUntil(() => gateway.logs.some((l) => l.includes(`id=${id}`) && l.includes('outcome=OUTPUT_LIMIT')), 2000, 'the log line');
  });

  it('reports a function killed for exceeding memoryMb as FUNCTION_OOM', async () => {
    const strayFile = join(process.cwd(), 'oom');
    const strayBefore = existsSync(strayFile);
    const response = await fetch(`${gateway.url}/fn/memory-hog`);
    expect(response.status).toBe(502);
    const error = await errorOf(response);
    expect(error).toMatchObject({ code: 'FUNCTION_OOM', signal: 'SIGKILL' });
    expect(error.message).toContain('memoryMb of 48 MiB');
    // conmon writes an `oom` file into podman's working directory: fnix gives it one in the state folder.
    await waitUntil(() => existsSync(join(gateway.stateDir, 'podman', 'oom')), 5000, "conmon's oom file in the state folder");
    if (!strayBefore) expect(existsSync(strayFile)).toBe(false);
  });

  it('keeps no response body after its request: memory stays flat over 300 echoes of 64 KiB', async () => {
    const body = randomBytes(64 * 1024);
    const echo = async () => {
      const response = await fetch(`${gateway.url}/fn/echo`, { method: 'POST', body });
      expect(Buffer.from(await response.arrayBuffer()).equals(body)).toBe(true);
    };
    for (let i = 0; i < 20; i += 1) await echo(); // warm: containers, connections, buffers
    const before = externalMemoryAfterGc();
    for (let i = 0; i < 300; i += 1) await echo();
    // 300 retained bodies would be 19 MiB (a race against a never-settling promise once kept each one).
    expect(externalMemoryAfterGc() - before).toBeLessThan(6 * 1024 * 1024);
  });

  it('serves /healthz with podman, nix, the package set and the pool', async () => {
    const response = await fetch(`${gateway.url}/healthz`);
    expect(response.status).toBe(200);
    const health = (await response.json()) as Record<string, any>;
    expect(health['status']).toBe('ok');
    expect(health['podman'].version).toMatch(/^\d+\.\d+/);
    expect(health['nix'].version).toContain('Nix');
    expect(health['packageSet'].kind).toBe('offline');
    expect(health['pool']).toMatchObject({ size: 2, max: 8 });
    expect(typeof health['pool'].warm).toBe('number');
    expect(typeof health['pool'].busy).toBe('number');
    expect(health['functions']).toContainEqual(expect.objectContaining({ name: 'hello', status: 'ready' }));
  });

  it('cuts PATH_INFO from the raw path when the name is percent-encoded', async () => {
    const text = await (await fetch(`${gateway.url}/fn/env-dum%70/a/b`)).text();
    expect(text).toContain('PATH_INFO=/a/b\n');
    expect(text).toContain('SCRIPT_NAME=/fn/env-dump\n');
  });

  it('answers JSON 404 for routes that do not exist', async () => {
    const response = await fetch(`${gateway.url}/nope`);
    expect(response.status).toBe(404);
    expect((await errorOf(response)).code).toBe('ROUTE_NOT_FOUND');
  });
});
