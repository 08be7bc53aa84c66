/**
 * @module
 * The smoke check of a deployment: each function is started once, in a container like any other, before
 * it goes live. It must start; what it prints does not matter.
 */
import { nanoid } from 'nanoid';
import { FnixError } from '../errors.ts';
import type { FunctionVersion } from '../functions/version.ts';
import type { Runner, StartedInvocation } from '../runner.ts';

/** How long a function may run in its smoke check; one still running then has started, which is all that is asked. */
export const SMOKE_CHECK_MS = 2000;

/** Starts `version` once with no input; resolves with a problem, or undefined when it started. */
export async function smokeCheck(runner: Runner, version: FunctionVersion): Promise<string | undefined> {
  let started: StartedInvocation;
  try {
    started = await runner.invoke({
      fn: version,
      id: nanoid(),
      env: { REQUEST_METHOD: 'GET', QUERY_STRING: '', PATH_INFO: '', FNIX_DEPLOY_CHECK: '1' },
      timeoutMs: Math.min(version.manifest.timeoutMs, SMOKE_CHECK_MS),
    });
  } catch (error) {
    return `could not get a container to start it in: ${error instanceof FnixError ? error.message : String(error)}`;
  }
  const { invocation } = started;
  invocation.stdin.end();
  invocation.stdout.resume();
  invocation.stderr.resume();
  const result = await invocation.done;
  const stderr = result.stderrTail.trim() ? `; its stderr ends with: ${result.stderrTail.trim().split('\n').slice(-5).join(' | ')}` : '';
  // 126 and 127 are what exec failures come to (the agent's, or a shell's for a script's interpreter).
  if (result.reason === 'exit' && (result.exitCode === 126 || result.exitCode === 127)) {
    return `it did not start: its command exited with ${result.exitCode} (cannot execute, or not found)${stderr}`;
  }
  if (result.reason === 'lost') return `its container stopped while it was starting${stderr}`;
  return undefined;
}
