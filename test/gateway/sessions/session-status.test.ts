/**
 * @module
 * The status a session ends with, and its close code (gateway/sessions/session-status.ts): the command's
 * exit as it was, an error as its code and message only.
 */
import { describe, expect, it } from 'vitest';
import { closeCodeOf, errorStatus, statusOf } from '../../../gateway/sessions/session-status.ts';
import { FnixError, InvocationError } from '../../../runtime/errors.ts';
import type { InvocationResult } from '../../../runtime/invocation/invocation.ts';

const facts = { functionName: 'f', invocationId: 'i' };

function result(fields: Partial<InvocationResult>): InvocationResult {
  return {
    reason: 'exit',
    exitCode: 0,
    signal: undefined,
    durationMs: 1,
    firstOutputMs: undefined,
    stdoutBytes: 0,
    stderrBytes: 0,
    stderrTail: '',
    oomKilled: false,
    pidsLimitHit: false,
    error: undefined,
    ...fields,
  };
}

describe('statusOf', () => {
  it('is the exit code, or the signal, of a command that exited', () => {
    expect(statusOf(result({ exitCode: 3, error: new InvocationError('FUNCTION_FAILED', 'exit 3', facts) }), 1000)).toEqual({ exitCode: 3 });
    expect(statusOf(result({ exitCode: undefined, signal: 'SIGTERM' }), 1000)).toEqual({ signal: 'SIGTERM' });
  });

  it('is SESSION_TIMEOUT, naming the limit, when the session clock ran out', () => {
    expect(statusOf(result({ reason: 'timeout' }), 1500)).toEqual({
      error: { code: 'SESSION_TIMEOUT', message: 'the session reached its sessionTimeoutMs (1500 ms)' },
    });
  });

  it("is the invocation's error otherwise, an OOM kill included, without its details", () => {
    const oom = new InvocationError('FUNCTION_OOM', 'out of memory', { ...facts, signal: 'SIGKILL' });
    expect(statusOf(result({ signal: 'SIGKILL', error: oom }), 1000)).toEqual({ error: { code: 'FUNCTION_OOM', message: 'out of memory' } });
    const lost = new InvocationError('CONTAINER_LOST', 'the container died', facts);
    expect(statusOf(result({ reason: 'lost', error: lost }), 1000)).toEqual({ error: { code: 'CONTAINER_LOST', message: 'the container died' } });
  });
});

describe('errorStatus', () => {
  it('carries the code and the message, in that order, and nothing else', () => {
    const status = errorStatus(new FnixError('SESSION_IDLE', 'quiet', { details: { idleTimeoutMs: 5 } }));
    expect(JSON.stringify(status)).toBe('{"error":{"code":"SESSION_IDLE","message":"quiet"}}');
  });
});

describe('closeCodeOf', () => {
  it('is 1001 at shutdown, 1011 for a lost container, 1000 otherwise', () => {
    expect(closeCodeOf(result({ reason: 'shutdown' }))).toBe(1001);
    expect(closeCodeOf(result({ reason: 'lost' }))).toBe(1011);
    expect(closeCodeOf(result({ reason: 'exit' }))).toBe(1000);
    expect(closeCodeOf(result({ reason: 'timeout' }))).toBe(1000);
  });
});
