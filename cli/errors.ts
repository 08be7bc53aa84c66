/**
 * @module
 * The CLI's errors and exit codes: a gateway's JSON error, a gateway that cannot be reached, a usage
 * mistake, each a {@link CliError} with a stable code, rendered on stderr as one legible block.
 */

/** What `fnix` exits with. docs/cli.md lists the same. */
export const EXIT = {
  OK: 0,
  /** The gateway or the function answered with an error (or a push was refused). */
  ERROR: 1,
  /** The command line was wrong: an unknown option, a missing argument, a bad --since. */
  USAGE: 2,
  /** The gateway could not be reached at all, or the connection to it was lost mid-answer. */
  UNREACHABLE: 3,
  /** The token (or an invoke key) was missing, wrong or refused. */
  UNAUTHORIZED: 4,
} as const;

/** The error codes that mean "not authorised": they exit with {@link EXIT.UNAUTHORIZED}. */
const UNAUTHORIZED_CODES = new Set(['UNAUTHORIZED', 'KEY_REQUIRED', 'KEY_INVALID', 'AUTH_RATE_LIMITED']);

/** Options of {@link CliError}. */
export interface CliErrorOptions {
  /** The HTTP status the gateway answered with, if it answered. */
  status?: number | undefined;
  /** The invocation the error belongs to (`x-fnix-invocation-id`). */
  invocationId?: string | undefined;
  /** A line on what to do about it. */
  hint?: string | undefined;
  /** The exit code. @default from the code: see {@link exitCodeOf} */
  exitCode?: number | undefined;
  /** The gateway error's other fields (`function`, `retryAfterSeconds`, ...). */
  details?: Record<string, unknown> | undefined;
  cause?: unknown;
}

/** An error the CLI reports and exits on: a gateway error code, or one of its own (USAGE, GATEWAY_UNREACHABLE, ...). */
export class CliError extends Error {
  override readonly name = 'CliError';
  readonly code: string;
  readonly status: number | undefined;
  readonly invocationId: string | undefined;
  readonly hint: string | undefined;
  readonly exitCode: number;
  readonly details: Record<string, unknown>;

  constructor(code: string, message: string, options: CliErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.code = code;
    this.status = options.status;
    this.invocationId = options.invocationId;
    this.hint = options.hint;
    this.details = options.details ?? {};
    this.exitCode = options.exitCode ?? exitCodeOf(code, options.status);
  }
}

/** The exit code for an error `code` (and the HTTP status it came with). */
export function exitCodeOf(code: string, status?: number): number {
  if (code === 'USAGE') return EXIT.USAGE;
  if (code === 'GATEWAY_UNREACHABLE' || code === 'CONNECTION_LOST') return EXIT.UNREACHABLE;
  if (UNAUTHORIZED_CODES.has(code) || status === 401) return EXIT.UNAUTHORIZED;
  return EXIT.ERROR;
}

/** A usage mistake: exits 2. */
export function usageError(message: string, hint?: string): CliError {
  return new CliError('USAGE', message, { hint });
}

/**
 * Reads a gateway's JSON error body (`{"error":{"code","message",...}}`); undefined when `text` is not
 * one (a function's own error response, say).
 */
export function parseGatewayError(text: string): { code: string; message: string; details: Record<string, unknown> } | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  const error = (body as { error?: unknown } | null)?.error as Record<string, unknown> | undefined;
  if (!error || typeof error['code'] !== 'string' || typeof error['message'] !== 'string' || !/^[A-Z][A-Z0-9_]*$/.test(error['code'])) return undefined;
  const { code, message, ...details } = error;
  return { code, message, details };
}

/** Paints text; the identity when colours are off. */
export type Paint = (text: string) => string;

/** How {@link renderError} paints: red for the code, dim for the rest. */
export interface ErrorPaint {
  red: Paint;
  dim: Paint;
}

const PLAIN: ErrorPaint = { red: (t) => t, dim: (t) => t };

/**
 * The error as people read it on stderr:
 *
 *     fnix: FUNCTION_NOT_FOUND (404): no function named "nope" is deployed
 *       invocation: 3f9c...
 *       hint: ...
 */
export function renderError(error: unknown, paint: ErrorPaint = PLAIN): string {
  if (!(error instanceof CliError)) {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    return `fnix: internal error in the CLI: ${message}\n`;
  }
  const status = error.status !== undefined ? ` (${error.status})` : '';
  const lines = [`fnix: ${paint.red(error.code)}${status}: ${error.message}`];
  const shown = Object.entries(error.details).filter(([key, value]) => key !== 'invocationId' && (typeof value !== 'object' || value === null));
  for (const [key, value] of shown) lines.push(paint.dim(`  ${key}: ${String(value)}`));
  // An unknown invocation's id is the one asked for: no line that points back to it.
  if (error.invocationId && error.code !== 'INVOCATION_NOT_FOUND')
    lines.push(paint.dim(`  invocation: ${error.invocationId} (fnix invocation ${error.invocationId})`));
  if (error.hint) lines.push(paint.dim(`  hint: ${error.hint}`));
  return `${lines.join('\n')}\n`;
}
