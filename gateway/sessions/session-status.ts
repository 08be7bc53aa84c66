/**
 * @module
 * The status a session ends with (channel 3) and its close code. A session that ends by an error ends
 * with that error's code (runtime/errors.ts), whether the command's invocation raised it or the session
 * itself did (SESSION_IDLE, SHUTTING_DOWN, ...); the frame carries its code and message only.
 */
import { type ErrorCode, FnixError } from '../../runtime/errors.ts';
import type { InvocationResult } from '../../runtime/invocation/invocation.ts';

/** The status a session ends with (channel 3): the command's exit, or why it was ended. */
export type SessionStatus = { exitCode: number } | { signal: string } | { error: { code: ErrorCode; message: string } };

/** The status of a session ended by `error`: its code and message, without its details. */
export function errorStatus(error: FnixError): SessionStatus {
  return { error: { code: error.code, message: error.message } };
}

/** The status of an invocation that ended by itself or by its own limits. */
export function statusOf(result: InvocationResult, sessionTimeoutMs: number): SessionStatus {
  if (result.reason === 'exit' && result.error?.code !== 'FUNCTION_OOM') {
    return result.signal !== undefined ? { signal: result.signal } : { exitCode: result.exitCode ?? 0 };
  }
  if (result.reason === 'timeout') {
    return errorStatus(new FnixError('SESSION_TIMEOUT', `the session reached its sessionTimeoutMs (${sessionTimeoutMs} ms)`));
  }
  return errorStatus(result.error!);
}

/** 1001 (going away) at shutdown, 1011 (internal error) when the container was lost, else 1000. */
export function closeCodeOf(result: InvocationResult): number {
  if (result.reason === 'shutdown') return 1001;
  if (result.reason === 'lost') return 1011;
  return 1000;
}
