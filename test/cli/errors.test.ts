/**
 * @module
 * How the CLI reads a gateway's errors and shows them (cli/errors.ts, cli/client.ts): the JSON error
 * body, the exit code of each kind, and the text on stderr.
 */
import { describe, expect, it } from 'vitest';
import { FnixClient, unreachable } from '../../cli/client.ts';
import { CliError, EXIT, exitCodeOf, parseGatewayError, renderError } from '../../cli/errors.ts';
import type { Settings } from '../../cli/settings.ts';

const SETTINGS: Settings = { url: 'http://127.0.0.1:8080', token: 't', tokenSource: 'FNIX_TOKEN', key: undefined, credentialsPath: '/x/credentials.json' };

describe('parseGatewayError', () => {
  it("reads the gateway's JSON error, its other fields as details", () => {
    expect(parseGatewayError('{"error":{"code":"FUNCTION_NOT_FOUND","message":"no function named \\"x\\"","function":"x"}}')).toEqual({
      code: 'FUNCTION_NOT_FOUND',
      message: 'no function named "x"',
      details: { function: 'x' },
    });
  });

  it.each(['', 'Hello', '{"short": true}', '{"error":"boom"}', '{"error":{"code":"lower","message":"m"}}', '{"error":{"code":"X"}}', 'null'])(
    'is undefined for %j, which is no gateway error',
    (text) => {
      expect(parseGatewayError(text)).toBeUndefined();
    },
  );
});

describe('exit codes', () => {
  it('maps each kind of error to its code', () => {
    expect(exitCodeOf('USAGE')).toBe(EXIT.USAGE);
    expect(exitCodeOf('GATEWAY_UNREACHABLE')).toBe(EXIT.UNREACHABLE);
    for (const code of ['UNAUTHORIZED', 'KEY_REQUIRED', 'KEY_INVALID', 'AUTH_RATE_LIMITED']) expect(exitCodeOf(code), code).toBe(EXIT.UNAUTHORIZED);
    expect(exitCodeOf('HTTP_401', 401)).toBe(EXIT.UNAUTHORIZED);
    for (const code of ['FUNCTION_FAILED', 'FUNCTION_NOT_FOUND', 'SECRET_IN_USE', 'PUSH_REFUSED']) expect(exitCodeOf(code), code).toBe(EXIT.ERROR);
    expect([EXIT.OK, EXIT.ERROR, EXIT.USAGE, EXIT.UNREACHABLE, EXIT.UNAUTHORIZED]).toEqual([0, 1, 2, 3, 4]);
  });
});

describe('renderError', () => {
  it('puts the code, the status, the message, the details, the invocation and the hint on their own lines', () => {
    const error = new CliError('FUNCTION_FAILED', 'the function exited with code 3', {
      status: 502,
      invocationId: 'abc123',
      details: { function: 'exit-3', exitCode: 3, stderrTail: ['x'] },
      hint: 'see its lines',
    });
    expect(renderError(error)).toBe(
      [
        'fnix: FUNCTION_FAILED (502): the function exited with code 3',
        '  function: exit-3',
        '  exitCode: 3',
        '  invocation: abc123 (fnix invocation abc123)',
        '  hint: see its lines',
        '',
      ].join('\n'),
    );
  });

  it('paints the code red when asked', () => {
    const text = renderError(new CliError('X', 'y'), { red: (t) => `<${t}>`, dim: (t) => t });
    expect(text).toBe('fnix: <X>: y\n');
  });

  it("names an unexpected error as the CLI's own", () => {
    expect(renderError(new TypeError('boom'))).toMatch(/^fnix: internal error in the CLI: TypeError: boom/);
  });
});

describe('FnixClient.errorOf', () => {
  const client = new FnixClient(SETTINGS);
  const response = (status: number, headers: Record<string, string> = {}) => new Response(null, { status, headers });

  it('turns a JSON error into its code, with the invocation id from the header', () => {
    const error = client.errorOf(response(502, { 'x-fnix-invocation-id': 'inv-1' }), '{"error":{"code":"FUNCTION_FAILED","message":"exit 3"}}');
    expect(error).toMatchObject({ code: 'FUNCTION_FAILED', message: 'exit 3', status: 502, invocationId: 'inv-1', exitCode: 1 });
  });

  it('takes the invocation id from the body when the header has none', () => {
    const error = client.errorOf(response(502), '{"error":{"code":"FUNCTION_FAILED","message":"m","invocationId":"inv-2"}}');
    expect(error.invocationId).toBe('inv-2');
    expect(renderError(error)).not.toContain('invocationId:');
  });

  it('says where a wrong token came from', () => {
    const error = client.errorOf(response(401), '{"error":{"code":"UNAUTHORIZED","message":"wrong token"}}');
    expect(error.exitCode).toBe(EXIT.UNAUTHORIZED);
    expect(error.hint).toBe('FNIX_TOKEN is not the deploy token of http://127.0.0.1:8080');
    const none = new FnixClient({ ...SETTINGS, token: undefined, tokenSource: undefined }).errorOf(
      response(401),
      '{"error":{"code":"UNAUTHORIZED","message":"m"}}',
    );
    expect(none.hint).toContain('set FNIX_TOKEN or run `fnix login`');
  });

  it('names a status without a JSON error as HTTP_<status>', () => {
    expect(client.errorOf(response(418), 'short and stout')).toMatchObject({ code: 'HTTP_418', status: 418, exitCode: 1 });
  });
});

describe('unreachable', () => {
  it('names the URL, the cause, and how to set FNIX_URL; exits 3', () => {
    const error = unreachable('http://127.0.0.1:9', Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } }));
    expect(error).toMatchObject({ code: 'GATEWAY_UNREACHABLE', exitCode: EXIT.UNREACHABLE });
    expect(error.message).toBe('cannot reach the fnix gateway at http://127.0.0.1:9 (ECONNREFUSED)');
    expect(error.hint).toContain('FNIX_URL=http://host:port');
  });
});
