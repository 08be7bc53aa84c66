/**
 * @module
 * Runs one host process to its end, feeding stdin and checking stdout: the floor, and the podman run and
 * podman exec baselines. node:child_process rather than execa, so that the floor carries no overhead but
 * the spawn's own.
 */
import { spawn } from 'node:child_process';

/** Runs `argv` with `input` on stdin; resolves once it exited with 0 and printed exactly `expected`. */
export function runToEnd(argv: readonly string[], input: Buffer | undefined, expected: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      const stdout = Buffer.concat(out);
      if (code !== 0) reject(new Error(`${argv.join(' ')} exited with ${code}: ${Buffer.concat(err).toString().slice(0, 300)}`));
      else if (!stdout.equals(expected)) reject(new Error(`${argv[0]} printed ${stdout.length} bytes, expected ${expected.length}`));
      else resolve();
    });
    child.stdin.on('error', () => {}); // a command that does not read its stdin
    child.stdin.end(input);
  });
}
