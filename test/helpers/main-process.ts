/**
 * @module
 * The real entry point (gateway/main.ts) as a child process, for tests where the process itself is what
 * is tested: its start, its signals, its death.
 */
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { waitUntil } from './processes.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** What main.ts logs once it serves functions. */
export const SERVING = /is serving at (http:\/\/127\.0\.0\.1:\d+)/;
/** What main.ts logs once its port is taken, before the runtime is up. */
export const LISTENING = /listening at (http:\/\/127\.0\.0\.1:\d+)/;

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
 * (serving, by default); throws with its output if it exits first.
 */
export async function startMain(env: Record<string, string>, options: { until?: RegExp; timeoutMs?: number } = {}): Promise<MainProcess> {
  const until = options.until ?? SERVING;
  const child = execa('node', ['--import', 'tsx', 'gateway/main.ts'], { cwd: ROOT, env: { FNIX_PORT: '0', ...env }, reject: false, all: true });
  let output = '';
  child.all!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await waitUntil(() => until.test(output) || child.exitCode !== null, options.timeoutMs ?? 120_000, 'the gateway to start');
  const url = until.exec(output)?.[1];
  if (!url) throw new Error(`the gateway did not start:\n${output}`);
  return { child, url, output: () => output };
}
