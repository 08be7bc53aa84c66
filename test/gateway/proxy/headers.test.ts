/**
 * @module
 * gateway/proxy/headers.ts: the request headers a serve function's server gets (hop-by-hop ones and
 * those the Connection header names dropped, repeated ones kept in order, the forwarding headers and
 * X-Fnix-Invocation-Id set by fnix), the response headers passed back, and the path asked for.
 */
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { requestHeaders, responseHeaders, upstreamPath } from '../../../gateway/proxy/headers.ts';

/** Headers whose repeats Node keeps as an array; the others it joins with ', ' (Host: the first only). */
const ARRAY_HEADERS = new Set(['set-cookie']);
const FIRST_ONLY = new Set(['host', 'content-type', 'content-length', 'user-agent', 'authorization']);

/**
 * An IncomingMessage as requestHeaders reads it: rawHeaders in the client's order and spelling,
 * headers lower-cased and folded as Node folds them, and the socket's address.
 */
function incoming(raw: Array<[string, string]>, socket: { remoteAddress?: string; encrypted?: boolean } = { remoteAddress: '203.0.113.7' }): IncomingMessage {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of raw) {
    const lower = name.toLowerCase();
    const seen = headers[lower];
    if (ARRAY_HEADERS.has(lower)) headers[lower] = [...((seen as string[] | undefined) ?? []), value];
    else if (seen === undefined) headers[lower] = value;
    else if (!FIRST_ONLY.has(lower)) headers[lower] = `${seen as string}, ${value}`;
  }
  return { rawHeaders: raw.flat(), headers, socket } as unknown as IncomingMessage;
}

/** A flat [name, value, ...] list as pairs. */
function pairs(flat: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
}

/** The values of header `name` (any case) in a flat list, in order. */
function valuesOf(flat: string[], name: string): string[] {
  return pairs(flat)
    .filter(([n]) => n.toLowerCase() === name.toLowerCase())
    .map(([, v]) => v);
}

const ID = 'inv-0123456789';

describe('requestHeaders', () => {
  it('passes the end-to-end headers in the client order and spelling, then the forwarding ones', () => {
    const out = requestHeaders({
      incoming: incoming([
        ['Host', 'fnix.example:8080'],
        ['Accept', 'text/html'],
        ['X-Custom-Thing', 'a'],
        ['content-type', 'application/json'],
        ['Content-Length', '12'],
      ]),
      invocationId: ID,
    });
    expect(pairs(out)).toEqual([
      ['Host', 'fnix.example:8080'],
      ['Accept', 'text/html'],
      ['X-Custom-Thing', 'a'],
      ['content-type', 'application/json'],
      ['Content-Length', '12'],
      ['X-Forwarded-For', '203.0.113.7'],
      ['X-Forwarded-Proto', 'http'],
      ['X-Forwarded-Host', 'fnix.example:8080'],
      ['X-Fnix-Invocation-Id', ID],
    ]);
  });

  it('drops every hop-by-hop header, and Expect', () => {
    const hopByHop = [
      'Connection',
      'Keep-Alive',
      'Proxy-Connection',
      'Proxy-Authenticate',
      'Proxy-Authorization',
      'TE',
      'Trailer',
      'Transfer-Encoding',
      'Upgrade',
      'Expect',
    ];
    const values: Record<string, string> = {
      Connection: 'keep-alive',
      'Keep-Alive': 'timeout=5',
      TE: 'trailers',
      'Transfer-Encoding': 'chunked',
      Upgrade: 'websocket',
      Expect: '100-continue',
    };
    const out = requestHeaders({
      incoming: incoming([['Host', 'h'], ...hopByHop.map((name): [string, string] => [name, values[name] ?? 'x']), ['Accept', '*/*']]),
      invocationId: ID,
    });
    for (const name of hopByHop) expect(valuesOf(out, name), name).toEqual([]);
    expect(valuesOf(out, 'accept')).toEqual(['*/*']);
  });

  it('drops the headers the Connection header names, whatever their case, from every Connection header', () => {
    const out = requestHeaders({
      incoming: incoming([
        ['Host', 'h'],
        ['Connection', 'keep-alive, X-Secret-One'],
        ['connection', ' x-secret-two ,'],
        ['x-secret-one', '1'],
        ['X-SECRET-TWO', '2'],
        ['X-Kept', '3'],
      ]),
      invocationId: ID,
    });
    expect(valuesOf(out, 'x-secret-one')).toEqual([]);
    expect(valuesOf(out, 'x-secret-two')).toEqual([]);
    expect(valuesOf(out, 'x-kept')).toEqual(['3']);
    expect(valuesOf(out, 'connection')).toEqual([]);
  });

  it('keeps repeated headers as separate lines, in order', () => {
    const out = requestHeaders({
      incoming: incoming([
        ['Host', 'h'],
        ['Cookie', 'a=1'],
        ['X-Multi', 'one'],
        ['Accept', 'text/plain'],
        ['x-multi', 'two'],
        ['X-Multi', 'three'],
      ]),
      invocationId: ID,
    });
    expect(pairs(out).filter(([n]) => n.toLowerCase() === 'x-multi')).toEqual([
      ['X-Multi', 'one'],
      ['x-multi', 'two'],
      ['X-Multi', 'three'],
    ]);
  });

  it('appends the client address to the X-Forwarded-For headers the client sent, as one header', () => {
    const out = requestHeaders({
      incoming: incoming(
        [
          ['Host', 'h'],
          ['X-Forwarded-For', '198.51.100.1'],
          ['x-forwarded-for', '198.51.100.2, 10.0.0.3'],
        ],
        { remoteAddress: '::ffff:192.0.2.9' },
      ),
      invocationId: ID,
    });
    expect(valuesOf(out, 'x-forwarded-for')).toEqual(['198.51.100.1, 198.51.100.2, 10.0.0.3, ::ffff:192.0.2.9']);
  });

  it('sets X-Forwarded-Proto, X-Forwarded-Host and X-Fnix-Invocation-Id over those the client sent', () => {
    const out = requestHeaders({
      incoming: incoming(
        [
          ['Host', 'real.example'],
          ['X-Forwarded-Proto', 'gopher'],
          ['X-Forwarded-Host', 'evil.example'],
          ['X-Fnix-Invocation-Id', 'forged'],
          ['x-fnix-invocation-id', 'forged-too'],
        ],
        { remoteAddress: '192.0.2.1', encrypted: true },
      ),
      invocationId: ID,
    });
    expect(valuesOf(out, 'x-forwarded-proto')).toEqual(['https']);
    expect(valuesOf(out, 'x-forwarded-host')).toEqual(['real.example']);
    expect(valuesOf(out, 'x-fnix-invocation-id')).toEqual([ID]);
  });

  it('sends no X-Forwarded-Host for a request without Host', () => {
    const out = requestHeaders({ incoming: incoming([['Accept', '*/*']]), invocationId: ID });
    expect(valuesOf(out, 'x-forwarded-host')).toEqual([]);
    expect(valuesOf(out, 'x-forwarded-proto')).toEqual(['http']);
  });

  it('keeps Upgrade, and says Connection: Upgrade, only for an upgrade passed through', () => {
    const raw: Array<[string, string]> = [
      ['Host', 'h'],
      ['Connection', 'keep-alive, Upgrade'],
      ['Upgrade', 'websocket'],
      ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='],
      ['Sec-WebSocket-Version', '13'],
    ];
    const upgraded = requestHeaders({ incoming: incoming(raw), invocationId: ID, upgrade: true });
    expect(valuesOf(upgraded, 'upgrade')).toEqual(['websocket']);
    expect(valuesOf(upgraded, 'connection')).toEqual(['Upgrade']);
    expect(valuesOf(upgraded, 'sec-websocket-key')).toEqual(['dGhlIHNhbXBsZSBub25jZQ==']);
    expect(valuesOf(upgraded, 'keep-alive')).toEqual([]);

    const plain = requestHeaders({ incoming: incoming(raw), invocationId: ID });
    expect(valuesOf(plain, 'upgrade')).toEqual([]);
    expect(valuesOf(plain, 'connection')).toEqual([]);
    expect(valuesOf(plain, 'sec-websocket-key')).toEqual(['dGhlIHNhbXBsZSBub25jZQ==']);
  });
});

describe('responseHeaders', () => {
  it('drops hop-by-hop headers, those Connection names and a forged x-fnix-error, and keeps the rest as they are', () => {
    const out = responseHeaders({
      'content-type': 'text/plain',
      'content-length': '5',
      connection: 'keep-alive, x-hop',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      trailer: 'x-checksum',
      upgrade: 'h2c',
      'proxy-authenticate': 'Basic',
      'proxy-connection': 'close',
      te: 'trailers',
      'x-hop': 'dropped',
      'set-cookie': ['a=1', 'b=2'],
      'x-absent': undefined,
      'cache-control': 'no-store',
      'x-fnix-error': 'FORGED',
    });
    expect({ ...out }).toEqual({
      'content-type': 'text/plain',
      'content-length': '5',
      'set-cookie': ['a=1', 'b=2'],
      'cache-control': 'no-store',
    });
  });

  it('returns an object without a prototype, so that a header named __proto__ is only a header', () => {
    const input = JSON.parse('{"__proto__": "x", "content-type": "text/plain"}') as Record<string, string>;
    const out = responseHeaders(input);
    expect(Object.getPrototypeOf(out)).toBeNull();
    expect(out['content-type']).toBe('text/plain');
  });
});

describe('upstreamPath', () => {
  it.each([
    ['/fn/x', '/'],
    ['/fn/x/', '/'],
    ['/fn/x?a=1', '/?a=1'],
    ['/fn/x/a/b?c', '/a/b?c'],
    ['/fn/x%20y/z', '/z'],
    // As the router resolves it: dot segments, and an absolute-form target.
    ['/fn/a/../b/x', '/x'],
    ['/fn/x/./y/../z?q', '/z?q'],
    ['http://host.example/fn/x/y?q=1', '/y?q=1'],
    ['/fn/x/a%2Fb?q=%20', '/a%2Fb?q=%20'],
    ['/fn/counter-py/hits', '/hits'],
  ])('maps %s to %s', (url, path) => {
    expect(upstreamPath(url)).toBe(path);
  });
});
