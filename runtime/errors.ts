/**
 * @module
 * Every error fnix raises on purpose is a {@link FnixError} with a stable `code`. The gateway maps codes
 * to HTTP statuses in one place (gateway/errors.ts); the README lists them. runtime/ never imports HTTP.
 */

/** Stable error codes. Adding one means adding it to gateway/errors.ts and the README's table. */
export type ErrorCode =
  | 'FUNCTION_NAME_INVALID'
  | 'FUNCTION_NOT_FOUND'
  | 'FUNCTION_UNAVAILABLE'
  | 'MANIFEST_INVALID'
  | 'COMMAND_NOT_FOUND'
  | 'PACKAGE_SET_INVALID'
  | 'PACKAGES_NIX_INVALID'
  | 'PACKAGE_NOT_FOUND'
  | 'PACKAGE_BUILD_FAILED'
  | 'FUNCTION_BUILD_FAILED'
  | 'BODY_TOO_LARGE'
  | 'FUNCTION_FAILED'
  | 'FUNCTION_TIMEOUT'
  | 'FUNCTION_OOM'
  | 'FUNCTION_BAD_RESPONSE'
  | 'SERVER_NOT_READY'
  | 'SERVER_EXITED'
  | 'OUTPUT_LIMIT'
  | 'INVOCATION_ABORTED'
  | 'NO_CAPACITY'
  | 'CONTAINER_START_FAILED'
  | 'CONTAINER_LOST'
  | 'SHUTTING_DOWN'
  | 'RUNTIME_UNAVAILABLE'
  | 'SESSION_PROTOCOL_ERROR'
  | 'SESSION_IDLE'
  | 'SESSION_TIMEOUT'
  | 'ORIGIN_NOT_ALLOWED'
  | 'HOST_NOT_ALLOWED'
  | 'UNAUTHORIZED'
  | 'DEPLOYMENT_NOT_FOUND'
  | 'DEPLOYMENT_REFUSED'
  | 'DEPLOY_IN_PROGRESS'
  | 'DEPLOY_CONFLICT'
  | 'CLUSTER_UNAVAILABLE'
  | 'STORE_UNAVAILABLE'
  | 'ROUTE_NOT_FOUND'
  | 'BAD_REQUEST'
  | 'REQUEST_HEADERS_TOO_LARGE'
  | 'REQUEST_TIMEOUT'
  | 'EXPECTATION_FAILED'
  | 'AUTH_RATE_LIMITED'
  | 'INVOCATION_NOT_FOUND'
  | 'SECRET_INVALID'
  | 'SECRET_NOT_FOUND'
  | 'SECRET_IN_USE'
  | 'SECRET_MISSING'
  | 'SECRETS_KEY_INVALID'
  | 'KEY_REQUIRED'
  | 'KEY_INVALID'
  | 'KEY_NOT_FOUND'
  | 'INTERNAL_ERROR';

export interface FnixErrorOptions {
  /** Extra, JSON-serialisable facts that clients may rely on (they appear in HTTP error bodies). */
  details?: Record<string, unknown>;
  cause?: unknown;
}

/**
 * The base of fnix's errors.
 * @example
 * throw new FnixError('FUNCTION_NOT_FOUND', "no function named 'x' is deployed", { details: { function: 'x' } });
 */
export class FnixError extends Error {
  override name = 'FnixError';
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: FnixErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }

  /** The JSON shape used by the HTTP API: `{ code, message, ...details }`. */
  toJSON(): Record<string, unknown> {
    // Details come after, but may not replace, the code and the message.
    const { code: _code, message: _message, ...details } = this.details;
    return { code: this.code, message: this.message, ...details };
  }
}

/** A function.json that cannot be used: names the file, the field and the offending value. */
export class ManifestError extends FnixError {
  override name = 'ManifestError';
  readonly file: string;
  readonly issues: ManifestIssue[];

  constructor(file: string, issues: ManifestIssue[]) {
    const lines = issues.map((i) => {
      const where = i.field ? `field '${i.field}'` : 'manifest';
      const value = 'value' in i ? ` (value ${JSON.stringify(i.value)?.slice(0, 120)})` : '';
      return `${where}${value}: ${i.message}`;
    });
    super('MANIFEST_INVALID', `${file}: ${lines.join('; ')}`, { details: { file, issues } });
    this.file = file;
    this.issues = issues;
  }
}

/** One problem in a manifest. `value` is omitted when the field is missing. */
export interface ManifestIssue {
  field: string;
  message: string;
  value?: unknown;
}

/** Why an invocation ended without success; carries what a caller needs to report it. */
export interface InvocationFacts {
  functionName: string;
  invocationId: string;
  containerId?: string | undefined;
  exitCode?: number | undefined;
  signal?: string | undefined;
  /** The last bytes of stderr, as text. */
  stderrTail?: string | undefined;
  durationMs?: number | undefined;
  timedOut?: boolean;
  isOutputLimit?: boolean;
  oomKilled?: boolean;
  pidsLimitHit?: boolean;
}

/** An invocation that failed, timed out, overflowed its output or lost its container. */
export class InvocationError extends FnixError {
  override name = 'InvocationError';
  readonly facts: InvocationFacts;

  constructor(code: ErrorCode, message: string, facts: InvocationFacts, cause?: unknown) {
    const details: Record<string, unknown> = { function: facts.functionName, invocationId: facts.invocationId };
    if (facts.exitCode !== undefined) details['exitCode'] = facts.exitCode;
    if (facts.signal !== undefined) details['signal'] = facts.signal;
    if (facts.stderrTail !== undefined) details['stderr'] = facts.stderrTail;
    if (facts.pidsLimitHit) details['pidsLimitHit'] = true;
    super(code, message, { details, cause });
    this.facts = facts;
  }
}

/** True for a FnixError with the given code; narrows the type. */
export function isFnixError(error: unknown, code?: ErrorCode): error is FnixError {
  return error instanceof FnixError && (code === undefined || error.code === code);
}
