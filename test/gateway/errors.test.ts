/**
 * @module
 * Error codes to HTTP (gateway/errors.ts: STATUS_BY_CODE covers every ErrorCode, errorResponse's JSON
 * body and headers (x-fnix-error among them), toFnixError, bodyTooLarge) and the error classes of runtime/errors.ts (FnixError,
 * ManifestError's message and details, InvocationError's details, isFnixError).
 */
import { describe, expect, it } from 'vitest';
import { ERROR_HEADER, STATUS_BY_CODE, bodyTooLarge, errorResponse, rawErrorResponse, toFnixError } from '../../gateway/errors.ts';
import { FnixError, InvocationError, ManifestError, isFnixError, type ErrorCode } from '../../runtime/errors.ts';

/** Every member of the ErrorCode union in runtime/errors.ts, written out. */
const ALL_CODES = [
  'FUNCTION_NAME_INVALID',
  'FUNCTION_NOT_FOUND',
  'FUNCTION_UNAVAILABLE',
  'MANIFEST_INVALID',
  'COMMAND_NOT_FOUND',
  'PACKAGE_SET_INVALID',
  'PACKAGES_NIX_INVALID',
  'PACKAGE_NOT_FOUND',
  'PACKAGE_BUILD_FAILED',
  'FUNCTION_BUILD_FAILED',
  'BODY_TOO_LARGE',
  'FUNCTION_FAILED',
  'FUNCTION_TIMEOUT',
  'FUNCTION_OOM',
  'FUNCTION_BAD_RESPONSE',
  'SERVER_NOT_READY',
  'SERVER_EXITED',
  'OUTPUT_LIMIT',
  'INVOCATION_ABORTED',
  'NO_CAPACITY',
  'CONTAINER_START_FAILED',
  'CONTAINER_LOST',
  'SHUTTING_DOWN',
  'RUNTIME_UNAVAILABLE',
  'SESSION_PROTOCOL_ERROR',
  'SESSION_IDLE',
  'SESSION_TIMEOUT',
  'ORIGIN_NOT_ALLOWED',
  'HOST_NOT_ALLOWED',
  'UNAUTHORIZED',
  'DEPLOYMENT_NOT_FOUND',
  'DEPLOYMENT_REFUSED',
  'DEPLOY_IN_PROGRESS',
  'ROUTE_NOT_FOUND',
  'BAD_REQUEST',
  'REQUEST_HEADERS_TOO_LARGE',
  'REQUEST_TIMEOUT',
  'EXPECTATION_FAILED',
  'AUTH_RATE_LIMITED',
  'INVOCATION_NOT_FOUND',
  'SECRET_INVALID',
  'SECRET_NOT_FOUND',
  'SECRET_IN_USE',
  'SECRET_MISSING',
  'SECRETS_KEY_INVALID',
  'KEY_REQUIRED',
  'KEY_INVALID',
  'KEY_NOT_FOUND',
  'DEPLOY_CONFLICT',
  'CLUSTER_UNAVAILABLE',
  'STORE_UNAVAILABLE',
  'INTERNAL_ERROR',
] as const satisfies readonly ErrorCode[];

// Fails type-checking when the ErrorCode union gains a code that ALL_CODES does not list.
type Unlisted = Exclude<ErrorCode, (typeof ALL_CODES)[number]>;
const everyCodeListed: [Unlisted] extends [never] ? true : Unlisted = true;

/** The codes answered with 503 (and so with retry-after). */
const UNAVAILABLE: ErrorCode[] = [
  'FUNCTION_UNAVAILABLE',
  'NO_CAPACITY',
  'CONTAINER_START_FAILED',
  'SHUTTING_DOWN',
  'RUNTIME_UNAVAILABLE',
  'SECRET_MISSING',
  'CLUSTER_UNAVAILABLE',
  'STORE_UNAVAILABLE',
];

describe('STATUS_BY_CODE', () => {
  it('has a status for exactly the listed codes', () => {
    expect(everyCodeListed).toBe(true);
    expect(new Set(ALL_CODES).size).toBe(ALL_CODES.length);
    expect(Object.keys(STATUS_BY_CODE).sort()).toEqual([...ALL_CODES].sort());
  });

  it.each(ALL_CODES)('maps %s to an error status (400-599)', (code) => {
    const status = STATUS_BY_CODE[code];
    expect(Number.isInteger(status)).toBe(true);
    expect(status).toBeGreaterThanOrEqual(400);
    expect(status).toBeLessThanOrEqual(599);
  });

  it('maps client mistakes to 4xx and function or gateway failures to 5xx', () => {
    expect(STATUS_BY_CODE).toMatchObject({
      FUNCTION_NAME_INVALID: 400,
      MANIFEST_INVALID: 400,
      FUNCTION_NOT_FOUND: 404,
      ROUTE_NOT_FOUND: 404,
      BODY_TOO_LARGE: 413,
      BAD_REQUEST: 400,
      REQUEST_HEADERS_TOO_LARGE: 431,
      REQUEST_TIMEOUT: 408,
      EXPECTATION_FAILED: 417,
      AUTH_RATE_LIMITED: 429,
      INVOCATION_ABORTED: 499,
      INTERNAL_ERROR: 500,
      FUNCTION_FAILED: 502,
      FUNCTION_BAD_RESPONSE: 502,
      OUTPUT_LIMIT: 502,
      CONTAINER_LOST: 502,
      NO_CAPACITY: 503,
      SHUTTING_DOWN: 503,
      FUNCTION_TIMEOUT: 504,
    });
    for (const code of UNAVAILABLE) expect(STATUS_BY_CODE[code]).toBe(503);
  });
});

describe('errorResponse', () => {
  it.each(ALL_CODES)('builds a %s response with its status and a JSON body', async (code) => {
    const response = errorResponse(new FnixError(code, `about ${code}`));
    expect(response.status).toBe(STATUS_BY_CODE[code]);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await response.json()).toEqual({ error: { code, message: `about ${code}` } });
  });

  it.each(ALL_CODES)("marks a %s response as the gateway's own with x-fnix-error: <code>", (code) => {
    expect(ERROR_HEADER).toBe('x-fnix-error');
    expect(errorResponse(new FnixError(code, 'x')).headers.get('x-fnix-error')).toBe(code);
    // The extra headers given (an invocation id) do not drop it.
    expect(errorResponse(new FnixError(code, 'x'), { 'x-fnix-invocation-id': 'abc' }).headers.get('x-fnix-error')).toBe(code);
  });

  it('spreads the details into the error object', async () => {
    const error = new FnixError('FUNCTION_NOT_FOUND', "no function named 'x'", { details: { function: 'x', nested: { a: [1, 2] } } });
    expect(await errorResponse(error).json()).toEqual({
      error: { code: 'FUNCTION_NOT_FOUND', message: "no function named 'x'", function: 'x', nested: { a: [1, 2] } },
    });
  });

  it('sets retry-after: 1 on every 503, the wait on a 429, and on nothing else', () => {
    for (const code of ALL_CODES) {
      const retryAfter = errorResponse(new FnixError(code, 'x')).headers.get('retry-after');
      expect(retryAfter).toBe(UNAVAILABLE.includes(code) ? '1' : code === 'AUTH_RATE_LIMITED' ? '60' : null);
    }
    expect(errorResponse(new FnixError('AUTH_RATE_LIMITED', 'x', { details: { retryAfterSeconds: 7 } })).headers.get('retry-after')).toBe('7');
  });

  it('adds the extra headers given, which may override the defaults', () => {
    const response = errorResponse(new FnixError('NO_CAPACITY', 'busy'), { 'x-fnix-invocation-id': 'abc', 'retry-after': '5' });
    expect(response.headers.get('x-fnix-invocation-id')).toBe('abc');
    expect(response.headers.get('retry-after')).toBe('5');
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
  });

  it("carries a ManifestError's file and issues", async () => {
    const error = new ManifestError('/f/function.json', [{ field: 'memoryMb', message: 'too small', value: 1 }]);
    const body = (await errorResponse(error).json()) as { error: Record<string, unknown> };
    expect(body.error).toMatchObject({
      code: 'MANIFEST_INVALID',
      file: '/f/function.json',
      issues: [{ field: 'memoryMb', message: 'too small', value: 1 }],
    });
  });
});

describe('rawErrorResponse', () => {
  it('is the same response as raw HTTP/1.1: status, JSON body with its length, headers, and a closed connection', async () => {
    const error = new FnixError('AUTH_RATE_LIMITED', 'too many', { details: { retryAfterSeconds: 3 } });
    const text = rawErrorResponse(error);
    const [head, body] = text.split('\r\n\r\n');
    const lines = head!.split('\r\n');
    expect(lines[0]).toBe('HTTP/1.1 429 AUTH_RATE_LIMITED');
    expect(lines).toContain('content-type: application/json; charset=utf-8');
    expect(lines).toContain('connection: close');
    expect(lines).toContain('retry-after: 3');
    expect(lines).toContain('x-fnix-error: AUTH_RATE_LIMITED');
    expect(lines).toContain(`content-length: ${Buffer.byteLength(body!)}`);
    expect(JSON.parse(body!)).toEqual(await errorResponse(error).json());
  });
});

describe('toFnixError', () => {
  it('returns a FnixError unchanged', () => {
    const error = new FnixError('NO_CAPACITY', 'busy');
    expect(toFnixError(error)).toBe(error);
    const manifest = new ManifestError('f', []);
    expect(toFnixError(manifest)).toBe(manifest);
  });

  it('turns a plain Error into INTERNAL_ERROR without its message, keeping it as the cause', async () => {
    const original = new Error('EACCES: /var/lib/fnix/secret-token');
    const error = toFnixError(original);
    expect(error.code).toBe('INTERNAL_ERROR');
    expect(error.message).not.toContain('secret-token');
    expect(error.details).toEqual({});
    expect(error.cause).toBe(original);
    const text = await errorResponse(error).text();
    expect(text).not.toContain('secret-token');
    expect(text).not.toContain('EACCES');
    expect(errorResponse(error).status).toBe(500);
  });

  it('turns thrown non-errors into INTERNAL_ERROR too', () => {
    for (const thrown of ['secret string', undefined, null, 42, { code: 'NO_CAPACITY', message: 'fake' }]) {
      const error = toFnixError(thrown);
      expect(error.code).toBe('INTERNAL_ERROR');
      expect(error.message).not.toContain('secret');
      expect(error.message).not.toContain('fake');
    }
  });
});

describe('bodyTooLarge', () => {
  it('is BODY_TOO_LARGE with the limit in its details, answered with 413', async () => {
    const error = bodyTooLarge(6 * 1024 * 1024);
    expect(error.code).toBe('BODY_TOO_LARGE');
    expect(error.details).toEqual({ maxBody: 6 * 1024 * 1024 });
    expect(error.message).toContain('FNIX_MAX_BODY');
    const response = errorResponse(error);
    expect(response.status).toBe(413);
    expect(((await response.json()) as { error: { maxBody: number } }).error.maxBody).toBe(6 * 1024 * 1024);
  });
});

describe('FnixError', () => {
  it('carries code, message, details and name, and serialises as { code, message, ...details }', () => {
    const error = new FnixError('FUNCTION_NOT_FOUND', 'nope', { details: { function: 'x' } });
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('FnixError');
    expect(error.toJSON()).toEqual({ code: 'FUNCTION_NOT_FOUND', message: 'nope', function: 'x' });
    expect(JSON.parse(JSON.stringify(error))).toEqual({ code: 'FUNCTION_NOT_FOUND', message: 'nope', function: 'x' });
  });

  it('defaults details to {} and sets a cause only when given', () => {
    const plain = new FnixError('INTERNAL_ERROR', 'x');
    expect(plain.details).toEqual({});
    expect('cause' in plain).toBe(false);
    const cause = new Error('inner');
    expect(new FnixError('INTERNAL_ERROR', 'x', { cause }).cause).toBe(cause);
  });
});

describe('ManifestError', () => {
  it('lists the file, then each field with its value and reason', () => {
    const error = new ManifestError('/srv/functions/hello/function.json', [
      { field: 'memoryMb', message: 'must be at least 16', value: 15 },
      { field: 'command.0', message: 'must be inside the folder', value: '/bin/sh' },
    ]);
    expect(error.message.startsWith('/srv/functions/hello/function.json: ')).toBe(true);
    expect(error.message).toContain("field 'memoryMb' (value 15): must be at least 16");
    expect(error.message).toContain(`field 'command.0' (value "/bin/sh"): must be inside the folder`);
    expect(error.message.indexOf('memoryMb')).toBeLessThan(error.message.indexOf('command.0'));
  });

  it('says "manifest" for an issue without a field and omits the value when there is none', () => {
    const error = new ManifestError('f.json', [
      { field: '', message: 'must be a JSON object' },
      { field: 'command', message: 'is required' },
    ]);
    expect(error.message).toContain('manifest: must be a JSON object');
    expect(error.message).toContain("field 'command': is required");
    expect(error.message).not.toContain('(value');
  });

  it('shows falsy values such as false, 0, null and ""', () => {
    const issues = [false, 0, null, ''].map((value, i) => ({ field: `f${i}`, message: 'bad', value }));
    const { message } = new ManifestError('f.json', issues);
    expect(message).toContain("field 'f0' (value false)");
    expect(message).toContain("field 'f1' (value 0)");
    expect(message).toContain("field 'f2' (value null)");
    expect(message).toContain(`field 'f3' (value "")`);
  });

  it('cuts a long value to 120 characters of JSON', () => {
    const error = new ManifestError('f.json', [{ field: 'env.A', message: 'too long', value: 'x'.repeat(1000) }]);
    expect(error.message).toContain(`(value "${'x'.repeat(119)}): too long`);
    expect(error.message).not.toContain('x'.repeat(120));
  });

  it('is MANIFEST_INVALID with the file and the issues as details', () => {
    const issues = [{ field: 'cgi', message: 'expected boolean', value: 'yes' }];
    const error = new ManifestError('f.json', issues);
    expect(error).toBeInstanceOf(FnixError);
    expect(error.name).toBe('ManifestError');
    expect(error.code).toBe('MANIFEST_INVALID');
    expect(error.file).toBe('f.json');
    expect(error.issues).toEqual(issues);
    expect(error.details).toEqual({ file: 'f.json', issues });
  });
});

describe('InvocationError', () => {
  const base = { functionName: 'hello', invocationId: 'inv-1' };

  it('always has the function and invocation id, and nothing else when no more is known', () => {
    const error = new InvocationError('CONTAINER_LOST', 'lost', base);
    expect(error).toBeInstanceOf(FnixError);
    expect(error.name).toBe('InvocationError');
    expect(error.code).toBe('CONTAINER_LOST');
    expect(error.details).toEqual({ function: 'hello', invocationId: 'inv-1' });
    expect(error.facts).toBe(base);
  });

  it('adds exitCode, signal and stderr when set, including exit code 0 and empty stderr', () => {
    expect(new InvocationError('FUNCTION_FAILED', 'x', { ...base, exitCode: 3, stderrTail: 'boom\n' }).details).toEqual({
      function: 'hello',
      invocationId: 'inv-1',
      exitCode: 3,
      stderr: 'boom\n',
    });
    expect(new InvocationError('FUNCTION_FAILED', 'x', { ...base, exitCode: 0, stderrTail: '' }).details).toEqual({
      function: 'hello',
      invocationId: 'inv-1',
      exitCode: 0,
      stderr: '',
    });
    expect(new InvocationError('FUNCTION_TIMEOUT', 'x', { ...base, signal: 'SIGKILL' }).details).toEqual({
      function: 'hello',
      invocationId: 'inv-1',
      signal: 'SIGKILL',
    });
  });

  it('leaves out facts that are undefined and facts that are not for clients', () => {
    const error = new InvocationError('OUTPUT_LIMIT', 'x', {
      ...base,
      exitCode: undefined,
      signal: undefined,
      stderrTail: undefined,
      containerId: 'c1',
      durationMs: 12,
      timedOut: false,
      isOutputLimit: true,
    });
    expect(error.details).toEqual({ function: 'hello', invocationId: 'inv-1' });
    expect(error.facts.containerId).toBe('c1');
  });

  it('keeps the cause', () => {
    const cause = new Error('socket closed');
    expect(new InvocationError('CONTAINER_LOST', 'x', base, cause).cause).toBe(cause);
  });
});

describe('isFnixError', () => {
  it('is true for FnixErrors and their subclasses, optionally of one code', () => {
    const manifest = new ManifestError('f', []);
    expect(isFnixError(manifest)).toBe(true);
    expect(isFnixError(manifest, 'MANIFEST_INVALID')).toBe(true);
    expect(isFnixError(manifest, 'INTERNAL_ERROR')).toBe(false);
    expect(isFnixError(new InvocationError('FUNCTION_TIMEOUT', 'x', { functionName: 'f', invocationId: 'i' }), 'FUNCTION_TIMEOUT')).toBe(true);
  });

  it('is false for other values, including look-alikes', () => {
    for (const value of [new Error('x'), { code: 'NO_CAPACITY', message: 'x' }, 'NO_CAPACITY', null, undefined]) {
      expect(isFnixError(value)).toBe(false);
    }
  });
});
