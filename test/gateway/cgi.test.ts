/**
 * @module
 * CGI: the request environment (gateway/cgi/env.ts, buildCgiEnv: meta-variables, PATH_INFO decoding,
 * header mapping, httpoxy) and the response header block (gateway/cgi/response.ts, CgiHeadParser and
 * badResponse: line endings, chunking, Status/Location/Content-Type rules, dropped headers, the body
 * bytes after the blank line, and FUNCTION_BAD_RESPONSE for malformed or oversized heads).
 */
import { describe, expect, it } from 'vitest';
import { buildCgiEnv, type CgiRequest } from '../../gateway/cgi/env.ts';
import { CgiHeadParser, MAX_CGI_HEADER_BYTES, badResponse, type CgiHead } from '../../gateway/cgi/response.ts';
import { FnixError } from '../../runtime/errors.ts';

function request(overrides: Partial<CgiRequest> = {}): CgiRequest {
  return {
    method: 'POST',
    pathInfo: '/a/b',
    query: 'x=1&y=%20',
    scriptName: '/fn/echo',
    headers: new Headers(),
    requestUri: '/fn/echo/a/b?x=1&y=%20',
    serverName: 'localhost',
    serverPort: '8080',
    remoteAddr: '127.0.0.1',
    remotePort: '54321',
    ...overrides,
  };
}

describe('buildCgiEnv', () => {
  it('sets exactly the CGI meta-variables for a request without headers', () => {
    expect(buildCgiEnv(request())).toEqual({
      GATEWAY_INTERFACE: 'CGI/1.1',
      SERVER_SOFTWARE: 'fnix',
      SERVER_PROTOCOL: 'HTTP/1.1',
      SERVER_NAME: 'localhost',
      SERVER_PORT: '8080',
      REQUEST_METHOD: 'POST',
      REQUEST_URI: '/fn/echo/a/b?x=1&y=%20',
      SCRIPT_NAME: '/fn/echo',
      PATH_INFO: '/a/b',
      QUERY_STRING: 'x=1&y=%20',
      REMOTE_ADDR: '127.0.0.1',
      REMOTE_PORT: '54321',
    });
  });

  it('passes the method as given', () => {
    for (const method of ['GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      expect(buildCgiEnv(request({ method })).REQUEST_METHOD).toBe(method);
    }
  });

  it('keeps QUERY_STRING URL-encoded and an empty query empty', () => {
    expect(buildCgiEnv(request({ query: 'q=a%2Bb+c&e=%00' })).QUERY_STRING).toBe('q=a%2Bb+c&e=%00');
    expect(buildCgiEnv(request({ query: '' })).QUERY_STRING).toBe('');
  });

  it.each([
    ['', ''],
    ['/', '/'],
    ['/a%20b', '/a b'],
    ['/caf%C3%A9', '/café'],
    ['/a%2Fb', '/a/b'],
    ['/100%25', '/100%'],
    ['/a+b', '/a+b'],
  ])('decodes PATH_INFO %j as %j', (raw, decoded) => {
    expect(buildCgiEnv(request({ pathInfo: raw })).PATH_INFO).toBe(decoded);
  });

  it.each(['/a%00b', '/ok%20then%00', '/%zz', '/a%', '/a%2', '/%FF', '/%C3', '/%E0%A4%A'])(
    'passes PATH_INFO %j as received (NUL or malformed escape)',
    (raw) => {
      expect(buildCgiEnv(request({ pathInfo: raw })).PATH_INFO).toBe(raw);
    },
  );

  it('sets CONTENT_TYPE and CONTENT_LENGTH, not HTTP_CONTENT_TYPE or HTTP_CONTENT_LENGTH', () => {
    const env = buildCgiEnv(request({ headers: new Headers({ 'Content-Type': 'application/json', 'Content-Length': '42' }) }));
    expect(env['CONTENT_TYPE']).toBe('application/json');
    expect(env['CONTENT_LENGTH']).toBe('42');
    expect(env).not.toHaveProperty('HTTP_CONTENT_TYPE');
    expect(env).not.toHaveProperty('HTTP_CONTENT_LENGTH');
  });

  it('leaves CONTENT_TYPE and CONTENT_LENGTH unset without those headers', () => {
    const env = buildCgiEnv(request({ headers: new Headers({ Accept: '*/*' }) }));
    expect(env).not.toHaveProperty('CONTENT_TYPE');
    expect(env).not.toHaveProperty('CONTENT_LENGTH');
  });

  it('maps other headers to HTTP_<NAME>, upper-case with - as _', () => {
    const env = buildCgiEnv(
      request({
        headers: new Headers({
          Accept: 'text/html',
          'User-Agent': 'curl/8',
          'X-Forwarded-For': '10.0.0.1',
          'x-api-v2': 'yes',
          Host: 'example.test',
          Authorization: 'Bearer t',
        }),
      }),
    );
    expect(env).toMatchObject({
      HTTP_ACCEPT: 'text/html',
      HTTP_USER_AGENT: 'curl/8',
      HTTP_X_FORWARDED_FOR: '10.0.0.1',
      HTTP_X_API_V2: 'yes',
      HTTP_HOST: 'example.test',
      HTTP_AUTHORIZATION: 'Bearer t',
    });
  });

  it('joins a repeated header into one variable', () => {
    const headers = new Headers();
    headers.append('X-Tag', 'a');
    headers.append('X-Tag', 'b');
    expect(buildCgiEnv(request({ headers })).HTTP_X_TAG).toBe('a, b');
  });

  it('does not turn a Proxy header into HTTP_PROXY (httpoxy)', () => {
    for (const name of ['Proxy', 'proxy', 'PROXY']) {
      const env = buildCgiEnv(request({ headers: new Headers({ [name]: 'http://attacker:8080' }) }));
      expect(env).not.toHaveProperty('HTTP_PROXY');
      expect(Object.values(env)).not.toContain('http://attacker:8080');
    }
  });

  it('still maps headers that merely start with "proxy"', () => {
    const env = buildCgiEnv(request({ headers: new Headers({ 'Proxy-Authorization': 'Basic x' }) }));
    expect(env['HTTP_PROXY_AUTHORIZATION']).toBe('Basic x');
  });

  it('skips header names with underscores, so X_Forwarded_For cannot pose as X-Forwarded-For', () => {
    const env = buildCgiEnv(request({ headers: new Headers({ X_Forwarded_For: '6.6.6.6', Content_Type: 'evil' }) }));
    expect(env).not.toHaveProperty('HTTP_X_FORWARDED_FOR');
    expect(env).not.toHaveProperty('CONTENT_TYPE');
    expect(Object.values(env)).not.toContain('6.6.6.6');
    expect(Object.values(env)).not.toContain('evil');
  });

  it('keeps the real header when an underscore twin is also sent', () => {
    const env = buildCgiEnv(request({ headers: new Headers({ 'X-Forwarded-For': '10.0.0.1', X_Forwarded_For: '6.6.6.6' }) }));
    expect(env['HTTP_X_FORWARDED_FOR']).toBe('10.0.0.1');
  });

  it('skips header names with other token characters', () => {
    const env = buildCgiEnv(request({ headers: new Headers({ 'X.Dot': '1', 'X!Bang': '2', "X'Q": '3' }) }));
    expect(Object.keys(env).filter((k) => k.startsWith('HTTP_'))).toEqual([]);
  });

  it('cannot overwrite a meta-variable from a header', () => {
    const env = buildCgiEnv(request({ headers: new Headers({ 'Path-Info': '/evil', 'Query-String': 'evil', 'Request-Method': 'DELETE', Gateway: 'x' }) }));
    expect(env['PATH_INFO']).toBe('/a/b');
    expect(env['QUERY_STRING']).toBe('x=1&y=%20');
    expect(env['REQUEST_METHOD']).toBe('POST');
    expect(env['HTTP_PATH_INFO']).toBe('/evil');
    expect(env['HTTP_REQUEST_METHOD']).toBe('DELETE');
  });
});

/** The error a function throws (fails the test if it does not throw). */
function errorOf(fn: () => unknown): FnixError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(FnixError);
    return error as FnixError;
  }
  throw new Error('expected a FUNCTION_BAD_RESPONSE error');
}

/** Parses `output` pushed as one chunk; fails if the head is not complete. */
function parse(output: string | Buffer): { head: CgiHead; rest: Buffer } {
  const result = new CgiHeadParser().push(typeof output === 'string' ? Buffer.from(output, 'latin1') : output);
  expect(result).toBeDefined();
  return result!;
}

/** Expects `output` to be refused with FUNCTION_BAD_RESPONSE. */
function expectBad(output: string | Buffer): FnixError {
  const error = errorOf(() => parse(output));
  expect(error.code).toBe('FUNCTION_BAD_RESPONSE');
  return error;
}

describe('CgiHeadParser: head and body', () => {
  it('parses an LF-terminated head and returns the body after the blank line', () => {
    const { head, rest } = parse('Content-Type: text/plain\nX-A: 1\n\nhello\n');
    expect(head).toEqual({
      status: 200,
      headers: [
        ['Content-Type', 'text/plain'],
        ['X-A', '1'],
      ],
    });
    expect(rest.toString()).toBe('hello\n');
  });

  it('parses a CRLF-terminated head the same way', () => {
    const { head, rest } = parse('Content-Type: text/plain\r\nX-A: 1\r\n\r\nhello\r\n');
    expect(head).toEqual({
      status: 200,
      headers: [
        ['Content-Type', 'text/plain'],
        ['X-A', '1'],
      ],
    });
    expect(rest.toString()).toBe('hello\r\n');
  });

  it('accepts mixed line endings', () => {
    for (const output of ['A: 1\r\nB: 2\n\nbody', 'A: 1\nB: 2\r\n\nbody', 'A: 1\nB: 2\n\r\nbody']) {
      const { head, rest } = parse(output);
      expect(head.headers.slice(0, 2)).toEqual([
        ['A', '1'],
        ['B', '2'],
      ]);
      expect(rest.toString()).toBe('body');
    }
  });

  it('returns undefined until the blank line arrives, across many chunks', () => {
    const output = Buffer.from('Status: 201 Created\r\nContent-Type: text/plain\r\nX-Long: abcdef\r\n\r\nbody bytes');
    const parser = new CgiHeadParser();
    let result: ReturnType<CgiHeadParser['push']>;
    const blankEnd = output.indexOf('\r\n\r\n') + 4;
    for (let i = 0; i < output.length; i++) {
      result = parser.push(output.subarray(i, i + 1));
      if (i + 1 < blankEnd) expect(result).toBeUndefined();
      else break;
    }
    expect(result!.head).toEqual({
      status: 201,
      headers: [
        ['Content-Type', 'text/plain'],
        ['X-Long', 'abcdef'],
      ],
    });
    expect(result!.rest.length).toBe(0);
  });

  it('gives the same head and body whichever two chunks the output is split into', () => {
    const output = Buffer.from('Status: 404 Not Found\r\nContent-Type: text/html\r\nSet-Cookie: a=1\r\n\r\n<p>gone</p>');
    for (let cut = 0; cut <= output.length; cut++) {
      const parser = new CgiHeadParser();
      const first = parser.push(output.subarray(0, cut));
      const result = first ?? parser.push(output.subarray(cut));
      expect(result).toBeDefined();
      expect(result!.head).toEqual({
        status: 404,
        headers: [
          ['Content-Type', 'text/html'],
          ['Set-Cookie', 'a=1'],
        ],
      });
      // When the head completed in the first chunk, the second chunk's bytes are the caller's to send.
      const body = first ? Buffer.concat([first.rest, output.subarray(cut)]) : result!.rest;
      expect(body.toString()).toBe('<p>gone</p>');
    }
  });

  it('returns the body bytes byte-exact, including binary and more blank lines', () => {
    const body = Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x0d, 0x0a, 0x0a, 0x80, 0xfe, 0x00]);
    const { rest } = parse(Buffer.concat([Buffer.from('Content-Type: image/png\r\n\r\n'), body]));
    expect(rest.equals(body)).toBe(true);
  });

  it('returns an empty body when nothing follows the blank line', () => {
    expect(parse('Content-Type: text/plain\n\n').rest.length).toBe(0);
  });

  it('treats output that starts with a blank line as an empty head', () => {
    for (const output of ['\nbody', '\r\nbody']) {
      const { head, rest } = parse(output);
      expect(head).toEqual({ status: 200, headers: [['Content-Type', 'application/octet-stream']] });
      expect(rest.toString()).toBe('body');
    }
  });

  it('trims header names and values and keeps the name as written', () => {
    expect(parse('x-CUSTOM :   spaced value  \n\n').head.headers[0]).toEqual(['x-CUSTOM', 'spaced value']);
  });

  it('keeps a colon inside the value', () => {
    expect(parse('Link: <http://a:1/b>; rel="x"\n\n').head.headers[0]).toEqual(['Link', '<http://a:1/b>; rel="x"']);
  });

  it('keeps repeated headers, in order', () => {
    expect(parse('Set-Cookie: a=1\nContent-Type: text/plain\nSet-Cookie: b=2\n\n').head.headers).toEqual([
      ['Set-Cookie', 'a=1'],
      ['Content-Type', 'text/plain'],
      ['Set-Cookie', 'b=2'],
    ]);
  });

  it('reads header bytes as Latin-1', () => {
    const head = Buffer.concat([Buffer.from('X-Name: caf'), Buffer.from([0xe9]), Buffer.from('\n\n')]);
    expect(parse(head).head.headers[0]).toEqual(['X-Name', 'caf\u00e9']);
  });
});

describe('CgiHeadParser: Status, Location and Content-Type', () => {
  it.each([
    ['200', 200],
    ['201 Created', 201],
    ['404 Not Found', 404],
    ['599', 599],
    ["418 I'm a teapot", 418],
    ['302\tFound', 302],
  ])('reads Status: %s as %d and does not pass it on as a header', (value, status) => {
    const { head } = parse(`Status: ${value}\nContent-Type: text/plain\n\n`);
    expect(head.status).toBe(status);
    expect(head.headers).toEqual([['Content-Type', 'text/plain']]);
  });

  it('matches Status, Location and Content-Type case-insensitively', () => {
    expect(parse('status: 503\ncontent-type: text/plain\n\n').head).toEqual({ status: 503, headers: [['content-type', 'text/plain']] });
    expect(parse('LOCATION: /x\ncontent-type: text/plain\n\n').head).toEqual({
      status: 302,
      headers: [
        ['LOCATION', '/x'],
        ['content-type', 'text/plain'],
      ],
    });
  });

  it('answers 302 for Location without Status, with the default Content-Type as any response', () => {
    expect(parse('Location: https://example.test/next\n\n').head).toEqual({
      status: 302,
      headers: [
        ['Location', 'https://example.test/next'],
        ['Content-Type', 'application/octet-stream'],
      ],
    });
  });

  it('keeps an explicit Status with Location', () => {
    expect(parse('Status: 301 Moved Permanently\nLocation: /new\nContent-Type: text/html\n\n').head).toEqual({
      status: 301,
      headers: [
        ['Location', '/new'],
        ['Content-Type', 'text/html'],
      ],
    });
  });

  it('adds Content-Type: application/octet-stream when there is none', () => {
    expect(parse('Status: 200\nX-A: 1\n\n').head.headers).toEqual([
      ['X-A', '1'],
      ['Content-Type', 'application/octet-stream'],
    ]);
  });

  it('takes the last Status when there are several', () => {
    expect(parse('Status: 201\nStatus: 202\n\n').head.status).toBe(202);
  });

  it.each([
    'Content-Length: 5',
    'Transfer-Encoding: chunked',
    'Connection: close',
    'Keep-Alive: timeout=5',
    'Upgrade: websocket',
    'Trailer: X',
    'x-fnix-invocation-id: forged',
    'X-FNIX-INVOCATION-ID: forged',
    'X-Fnix-Error: FORGED',
    'content-length: 0',
  ])('drops %j', (line) => {
    expect(parse(`${line}\nContent-Type: text/plain\n\n`).head.headers).toEqual([['Content-Type', 'text/plain']]);
  });
});

describe('CgiHeadParser: bad responses', () => {
  it.each([
    'no colon here\n\nbody',
    ': no name\n\n',
    'Bad Name: x\n\n',
    'X-A: 1\n folded continuation\n\n',
    'Bad(Name): x\n\n',
    'Name\u00e9: x\n\n',
    'HTTP/1.1 200 OK\n\n',
  ])('refuses the header line in %j', (output) => {
    const error = expectBad(output);
    expect(error.details).toEqual({});
  });

  it.each(['abc', '99', '600', '199', '100 Continue', '200OK', '2000', '', '-200', '20x', '404Not Found'])('refuses Status: %j', (value) => {
    expect(expectBad(`Status: ${value}\nContent-Type: text/plain\n\n`).message).toContain(JSON.stringify(value));
  });

  it('refuses a NUL or a lone CR inside a header value', () => {
    expectBad('X-A: a\0b\n\n');
    expectBad('X-A: a\rb\n\n');
  });

  it.each(['01', '08', '0b', '1b', '1f', '7f'])('refuses the byte 0x%s in a header value, naming it', (hex) => {
    const error = expectBad(`X-A: a${String.fromCharCode(parseInt(hex, 16))}b\n\n`);
    expect(error.message).toContain(`0x${hex}`);
  });

  it('takes tab, visible ASCII and bytes from 0x80 in a header value, as Node does', () => {
    const value = Buffer.concat([Buffer.from('X-A: a\tb ~'), Buffer.from([0x80, 0xe9, 0xff]), Buffer.from('\n\n')]);
    expect(parse(value).head.headers[0]).toEqual(['X-A', 'a\tb ~\x80\xe9\xff']);
  });

  it('names the offending header line in the message', () => {
    expect(expectBad('garbage line\n\n').message).toContain('garbage line');
  });

  it('refuses a head that grows past 64 KiB without a blank line', () => {
    const parser = new CgiHeadParser();
    expect(parser.push(Buffer.from(`X-Big: ${'a'.repeat(MAX_CGI_HEADER_BYTES - 8)}`))).toBeUndefined(); // 64 KiB - 1
    expect(parser.push(Buffer.from('a'))).toBeUndefined(); // exactly 64 KiB
    const error = errorOf(() => parser.push(Buffer.from('a')));
    expect(error.code).toBe('FUNCTION_BAD_RESPONSE');
    expect(error.message).toContain(String(MAX_CGI_HEADER_BYTES));
  });

  it('refuses a head over 64 KiB that arrives in one chunk', () => {
    expectBad(`X-Big: ${'a'.repeat(MAX_CGI_HEADER_BYTES + 1)}`);
  });

  it('refuses a head over 64 KiB even when its blank line arrives in the chunk that crosses the limit', () => {
    const parser = new CgiHeadParser();
    expect(parser.push(Buffer.from(`X-A: ${'a'.repeat(60 * 1024)}\n`))).toBeUndefined();
    const error = errorOf(() => parser.push(Buffer.from(`X-B: ${'b'.repeat(10 * 1024)}\n\nbody`)));
    expect(error.code).toBe('FUNCTION_BAD_RESPONSE');
  });

  it('accepts a large body after a small head', () => {
    const body = Buffer.alloc(MAX_CGI_HEADER_BYTES * 2, 0x61);
    expect(parse(Buffer.concat([Buffer.from('Content-Type: text/plain\n\n'), body])).rest.length).toBe(body.length);
  });
});

describe('badResponse', () => {
  it('is FUNCTION_BAD_RESPONSE, gives the reason and says what a CGI response is', () => {
    const error = badResponse('it wrote nothing');
    expect(error).toBeInstanceOf(FnixError);
    expect(error.code).toBe('FUNCTION_BAD_RESPONSE');
    expect(error.message).toContain('it wrote nothing');
    expect(error.message).toContain('"cgi": true');
    expect(error.message).toContain('blank line');
  });
});
