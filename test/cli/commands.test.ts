/**
 * @module
 * The commands' own logic, without a gateway: invoke's path, headers and -i head, the git environment
 * that carries deploy's token and push's arguments, NDJSON reading for logs --follow (a broken stream
 * included), and how records and lines are shown.
 */
import { describe, expect, it } from 'vitest';
import type { InvocationRecord, LogLine } from '../../cli/api-types.ts';
import { gitAuthEnv, pushArgs } from '../../cli/commands/deploy.ts';
import { describeHead, invokePath, parseHeaders } from '../../cli/commands/invoke.ts';
import { describeInvocations, formatLogLine, ndjson } from '../../cli/commands/logs.ts';
import { CliError, EXIT } from '../../cli/errors.ts';
import { paletteFor } from '../../cli/output.ts';

const PLAIN = paletteFor(false);

describe('invoke', () => {
  it('puts the path and the query after /fn/<name>', () => {
    expect(invokePath('hello', undefined)).toBe('/fn/hello');
    expect(invokePath('hello', '?name=Ada')).toBe('/fn/hello?name=Ada');
    expect(invokePath('echo', '/a/b?x=1')).toBe('/fn/echo/a/b?x=1');
    expect(invokePath('echo', 'a/b')).toBe('/fn/echo/a/b');
    expect(invokePath('a b', undefined)).toBe('/fn/a%20b');
  });

  it("reads 'Name: value' headers, and refuses one without a colon", () => {
    expect(parseHeaders(['Content-Type: text/plain', 'X-A:1', 'X-Colon: a:b'])).toEqual({ 'content-type': 'text/plain', 'x-a': '1', 'x-colon': 'a:b' });
    expect(() => parseHeaders(['no colon'])).toThrow(CliError);
    expect(() => parseHeaders([': empty name'])).toThrow(CliError);
  });

  it('shows the head with -i as it was sent: names spelled as sent, repeats kept', () => {
    const head = describeHead({
      status: 418,
      statusText: "I'm a Teapot",
      rawHeaders: ['Content-Type', 'text/plain', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2'],
    });
    expect(head).toBe("HTTP 418 I'm a Teapot\nContent-Type: text/plain\nSet-Cookie: a=1\nSet-Cookie: b=2\n\n");
  });
});

describe('deploy', () => {
  it('gives git the token as an http.extraHeader in its environment, after any GIT_CONFIG_* already set, and no credential helper', () => {
    const env = gitAuthEnv({ PATH: '/bin', GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'a.b', GIT_CONFIG_VALUE_0: 'c' }, 'secret-token');
    expect(env).toMatchObject({
      PATH: '/bin',
      GIT_TERMINAL_PROMPT: '0',
      GIT_CONFIG_COUNT: '3',
      GIT_CONFIG_KEY_0: 'a.b',
      GIT_CONFIG_KEY_1: 'http.extraHeader',
      GIT_CONFIG_VALUE_1: `Authorization: Basic ${Buffer.from('fnix:secret-token').toString('base64')}`,
      GIT_CONFIG_KEY_2: 'credential.helper',
      GIT_CONFIG_VALUE_2: '',
    });
    expect(gitAuthEnv({}, 't')['GIT_CONFIG_KEY_0']).toBe('http.extraHeader');
  });

  it("asks git for its progress (--progress) when stderr is a terminal, which git cannot see through fnix's pipe", () => {
    expect(pushArgs('http://gw/git/functions.git', { force: false, progress: false })).toEqual(['push', 'http://gw/git/functions.git', 'HEAD:refs/heads/main']);
    expect(pushArgs('http://gw/git/functions.git', { force: true, progress: true })).toEqual([
      'push',
      '--progress',
      '--force',
      'http://gw/git/functions.git',
      'HEAD:refs/heads/main',
    ]);
  });
});

describe('logs', () => {
  const line: LogLine = { time: '2026-12-02T01:00:00.000Z', function: 'echo', invocationId: 'inv-1', instance: null, stream: 'stderr', line: 'POST /x' };

  it('prints `time stream [invocation] line`, or the instance when there is no invocation', () => {
    expect(formatLogLine(line, PLAIN)).toBe('2026-12-02T01:00:00.000Z stderr [inv-1] POST /x\n');
    expect(formatLogLine({ ...line, invocationId: null, instance: 'i-1', stream: 'stdout' }, PLAIN)).toBe('2026-12-02T01:00:00.000Z stdout [i-1] POST /x\n');
    expect(formatLogLine({ ...line, invocationId: null, stream: 'fnix', line: '312 lines dropped' }, PLAIN)).toBe(
      '2026-12-02T01:00:00.000Z fnix   312 lines dropped\n',
    );
  });

  it('reads NDJSON split anywhere, a multi-byte character included', async () => {
    const text = '{"a":1}\n\n{"b":"é"}\n{"c":3}';
    const bytes = Buffer.from(text);
    const cut = bytes.indexOf(Buffer.from('é')) + 1; // inside the two bytes of é
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const piece of [bytes.subarray(0, 3), bytes.subarray(3, cut), bytes.subarray(cut)]) controller.enqueue(piece);
        controller.close();
      },
    });
    const values: unknown[] = [];
    for await (const value of ndjson(body, 'http://gw')) values.push(value);
    expect(values).toEqual([{ a: 1 }, { b: 'é' }, { c: 3 }]);
  });

  it('ends a stream that breaks with CONNECTION_LOST (exit 3) naming the gateway, and a line that is not JSON with BAD_ANSWER', async () => {
    // A line, then the failure fetch reports when the socket closes mid-body.
    let pulls = 0;
    const broken = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulls++ === 0) controller.enqueue(Buffer.from('{"a":1}\n'));
        else controller.error(Object.assign(new TypeError('terminated'), { cause: { code: 'UND_ERR_SOCKET', message: 'other side closed' } }));
      },
    });
    const values: unknown[] = [];
    const failure = await (async () => {
      for await (const value of ndjson(broken, 'http://gw:8080')) values.push(value);
    })().catch((error: unknown) => error);
    expect(values).toEqual([{ a: 1 }]);
    expect(failure).toBeInstanceOf(CliError);
    expect(failure).toMatchObject({ code: 'CONNECTION_LOST', exitCode: EXIT.UNREACHABLE });
    expect((failure as CliError).message).toBe('the connection to http://gw:8080 was lost before the answer ended (UND_ERR_SOCKET)');
    const garbled = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(Buffer.from('<html>\n'));
        controller.close();
      },
    });
    await expect(ndjson(garbled, 'http://gw').next()).rejects.toMatchObject({ code: 'BAD_ANSWER', exitCode: EXIT.ERROR });
  });

  it('shows invocation records as a table', () => {
    const record: InvocationRecord = {
      id: 'inv-1',
      function: 'exit-3',
      version: 'v',
      deployment: null,
      kind: 'http',
      startedAt: '2026-12-02T01:00:00.000Z',
      durationMs: 12,
      outcome: 'FUNCTION_FAILED',
      status: 502,
      exitCode: 3,
      signal: null,
      bytesIn: 0,
      bytesOut: 2048,
      cold: false,
      instance: null,
      container: 'c',
    };
    expect(describeInvocations([record], PLAIN).split('\n')).toEqual([
      'ID     STARTED                   KIND  OUTCOME          STATUS  EXIT  DURATION  IN   OUT      START',
      'inv-1  2026-12-02T01:00:00.000Z  http  FUNCTION_FAILED  502     3     12 ms     0 B  2.0 KiB  warm',
      '',
    ]);
    expect(describeInvocations([], PLAIN)).toBe('no invocations\n');
  });
});
