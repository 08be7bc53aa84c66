/**
 * @module
 * One-shot commands for the cluster lab: run to the end, their output returned, a failure thrown with
 * the command and what it printed. Long-lived processes go through registry.ts instead.
 */
import { execa } from 'execa';

/** What a finished command left. */
export interface CommandResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Options of {@link sh}. */
export interface ShOptions {
  /** Resolve with a non-zero exit code rather than throw. @default true (throw) */
  reject?: boolean;
  /** Kill the command after this long. @default 30_000 */
  timeoutMs?: number;
  cwd?: string;
  env?: Record<string, string>;
  /** Written to the command's stdin. */
  input?: string;
}

/** Runs `argv` to its end; throws (unless `reject: false`) with the command line and its stderr when it fails. */
export async function sh(argv: readonly string[], options: ShOptions = {}): Promise<CommandResult> {
  const result = await execa(argv[0]!, argv.slice(1), {
    reject: false,
    timeout: options.timeoutMs ?? 30_000,
    cwd: options.cwd,
    env: options.env,
    input: options.input,
    stdin: options.input === undefined ? 'ignore' : 'pipe',
  });
  const done = { stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? ''), exitCode: result.exitCode ?? -1 };
  if (done.exitCode !== 0 && options.reject !== false) {
    const why = result.timedOut ? `timed out after ${options.timeoutMs ?? 30_000} ms` : `exited with ${result.exitCode ?? result.signal}`;
    throw new Error(`cluster lab: \`${argv.join(' ')}\` ${why}: ${(done.stderr || done.stdout).trim().slice(-2000)}`);
  }
  return done;
}

/** The output of `argv`, trimmed. */
export async function output(argv: readonly string[], options: ShOptions = {}): Promise<string> {
  return (await sh(argv, options)).stdout.trim();
}
