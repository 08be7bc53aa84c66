/**
 * @module
 * The real entry point (gateway/main.ts) as a child process, for tests where the process itself is what
 * is tested: its start, its signals, its death.
 */
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { afterAll, afterEach, expect } from 'vitest';
import { GATEWAY_NODE_FLAGS } from '../../bench/gateway-process.ts';
import { BUG_PREFIX } from '../../gateway/process-guards.ts';
import { waitUntil } from './processes.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** What main.ts logs once it serves functions. */
export const SERVING = /is serving at (http:\/\/127\.0\.0\.1:\d+)/;
/** What main.ts logs once its port is taken, before the runtime is up. */
export const LISTENING = /listening at (http:\/\/127\.0\.0\.1:\d+)/;

/** What gateway/process-guards.ts logs when it catches an unhandled rejection or an uncaught exception. */
const BUG = new RegExp(`ERROR ${BUG_PREFIX}.*`);
/** The gateways started in this test file. */
const started: MainProcess[] = [];

// An unhandled rejection or 'error' event in a gateway process is a bug found by the test that ran it:
// the process stays up (as it must in production), so the test fails on its log line instead.
const noBugs = () => {
  const found = started.flatMap((main) => BUG.exec(main.output()) ?? []);
  expect(found, 'a gateway process logged an unhandled error').toEqual([]);
};
afterEach(noBugs);
// Registered before the test file's own hooks, so that it runs after them (vitest runs them as a
// stack): a bug logged while a gateway shuts down in the file's afterAll is caught too.
afterAll(noBugs);

/** A running gateway/main.ts. */
export interface MainProcess {
  child: ResultPromise;
  /** The URL from the log line that `until` matched. */
  url: string;
  /** Everything it has written to stdout and stderr so far. */
  output(): string;
}

/**
 * Starts gateway/main.ts with `env` (and FNIX_PORT=0) and resolves once its log matches `until`
 * (serving, by default); throws with its output if it exits first. `prefix` runs it under another
 * command that execs it, such as `prlimit`.
 */
export async function startMain(env: Record<string, string>, options: { until?: RegExp; timeoutMs?: number; prefix?: string[] } = {}): Promise<MainProcess> {
  const until = options.until ?? SERVING;
  // A prefix that execs the rest (`prlimit --nofile=N:N --`) keeps the gateway's pid the child's own.
  // With npm start's Node flags, so that the process under test is the one that runs.
  const command = [...(options.prefix ?? []), 'node', ...GATEWAY_NODE_FLAGS, '--import', 'tsx', 'gateway/main.ts'];
  const child = execa(command[0]!, command.slice(1), { cwd: ROOT, env: { FNIX_PORT: '0', ...env }, reject: false, all: true });
  let output = '';
  child.all!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await waitUntil(() => until.test(output) || child.exitCode !== null, options.timeoutMs ?? 120_000, 'the gateway to start');
  const url = until.exec(output)?.[1];
  if (!url) throw new Error(`the gateway did not start:\n${output}`);
  const main = { child, url, output: () => output };
  started.push(main);
  return main;
}
