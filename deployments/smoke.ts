/**
 * @module
 * The smoke check of a deployment: each function is started once, in a container like any other, before
 * it goes live. It must start; what it prints does not matter.
 */
import { nanoid } from 'nanoid';
import { FnixError } from '../runtime/errors.ts';
import type { FunctionVersion } from '../runtime/functions/version.ts';
import type { Runner, StartedInvocation } from '../runtime/runner.ts';
import type { ServeInstances } from '../runtime/serve/instances.ts';
import { seconds } from './build.ts';
import type { Progress } from './context.ts';
import { FUNCTIONS_FOLDER } from './tree.ts';

/** How long a function may run in its smoke check; one still running then has started, which is all that is asked. */
export const SMOKE_CHECK_MS = 2000;

/** What a smoke check runs functions with: the runner, and serve functions' instances. */
export interface SmokeRunners {
  runner: Runner;
  instances: Pick<ServeInstances, 'check'>;
}

/**
 * Starts `version` once with no input; resolves with a problem, or undefined when it started. A
 * serve function must become ready: its server started, and answering its readyPath.
 */
export async function smokeCheck({ runner, instances }: SmokeRunners, version: FunctionVersion): Promise<string | undefined> {
  if (version.manifest.serve) return instances.check(version);
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

/**
 * Smoke-checks each version in turn, saying in `progress` which started; returns the problem of each
 * one that did not, by function name, as the pusher reads it (`functions/<name>: ...`).
 */
export async function smokeCheckAll(runners: SmokeRunners, versions: FunctionVersion[], progress: Progress): Promise<Map<string, string>> {
  const problems = new Map<string, string>();
  for (const version of versions) {
    const started = performance.now();
    const problem = await smokeCheck(runners, version);
    if (problem) problems.set(version.name, `${FUNCTIONS_FOLDER}/${version.name}: ${problem}`);
    else if (version.manifest.serve)
      progress(`${FUNCTIONS_FOLDER}/${version.name}: its server started and answered ${version.manifest.serve.readyPath} (${seconds(started)})`);
    else progress(`${FUNCTIONS_FOLDER}/${version.name}: started in a container (${seconds(started)})`);
  }
  return problems;
}
