/**
 * @module
 * The host's process table, read from /proc: container processes are host processes too, so a test can
 * check that a process is really gone rather than assume it.
 */
import { readdir, readFile } from 'node:fs/promises';

/** Host pids of processes whose environment holds `NAME=value`. */
export async function pidsWithEnv(name: string, value: string): Promise<number[]> {
  const needle = Buffer.from(`${name}=${value}\0`);
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const environ = await readFile(`/proc/${entry}/environ`).catch(() => undefined);
    if (environ && (environ.indexOf(needle) === 0 || environ.includes(Buffer.concat([Buffer.of(0), needle])))) pids.push(Number(entry));
  }
  return pids;
}

/** Polls until `check` returns true or `timeoutMs` passes; returns the elapsed ms, or throws. */
export async function waitUntil(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await check()) return performance.now() - start;
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Resolves once `child`'s output (stdout and stderr, with `all: true`) matches `pattern`: an event to wait on rather than a sleep. */
export function outputMatches(child: { all?: NodeJS.ReadableStream | null | undefined }, pattern: RegExp, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${pattern} in: ${output.slice(-500)}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (!pattern.test(output)) return;
      clearTimeout(timer);
      child.all!.off('data', onData);
      resolve();
    };
    child.all!.on('data', onData);
  });
}

/** The podman id of a container running a process of function `name` (from the process's cgroup), if any. */
export async function containerRunning(name: string): Promise<string | undefined> {
  for (const pid of await pidsWithEnv('FNIX_FUNCTION', name)) {
    const match = /libpod-([0-9a-f]{64})/.exec(await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => ''));
    if (match) return match[1];
  }
  return undefined;
}
