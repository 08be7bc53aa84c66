/**
 * @module
 * gateway/process-guards.ts in a process of its own: an unhandled rejection and an uncaught exception
 * are logged as bugs, with the prefix the tests look for (test/helpers/main-process.ts), and counted,
 * and the process goes on.
 */
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { BUG_PREFIX } from '../../gateway/process-guards.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('guardProcess', () => {
  it('logs each unhandled error as a bug with its stack, counts it, and keeps the process up', async () => {
    const result = await execa('node', ['--import', 'tsx', 'test/fixtures/scripts/unhandled-errors.ts'], { cwd: ROOT, reject: false });
    expect(result.exitCode, result.stderr).toBe(0);
    const lines = result.stdout.split('\n');
    expect(lines.filter((line) => line.includes(`ERROR ${BUG_PREFIX}an unhandled promise rejection; fnix goes on serving`))).toHaveLength(1);
    expect(lines.filter((line) => line.includes(`ERROR ${BUG_PREFIX}an uncaught exception; fnix goes on serving`))).toHaveLength(1);
    expect(result.stdout).toContain('rejected, and nobody listens');
    expect(result.stdout).toMatch(/stack=".*unhandled-errors\.ts/);
    expect(JSON.parse(lines.at(-1)!)).toEqual({ unhandledRejection: 1, uncaughtException: 1 });
  });
});
