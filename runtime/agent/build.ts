/**
 * @module
 * Compiles fnix-agent (agent.c) into a static binary with the host's C compiler. The result is cached
 * by the hash of the source, so it is compiled once per change, not once per start.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const SOURCE = fileURLToPath(new URL('./agent.c', import.meta.url));
const CFLAGS = ['-static', '-O2', '-Wall', '-Wextra', '-Werror'];

/** Returns the path of a compiled agent under `outDir`, compiling it when the source changed. */
export async function buildAgent(outDir: string): Promise<string> {
  const source = await readFile(SOURCE);
  const hash = createHash('sha256').update(source).update(CFLAGS.join(' ')).digest('hex').slice(0, 16);
  const binary = join(outDir, `fnix-agent-${hash}`);
  if (await isFile(binary)) return binary;
  await mkdir(outDir, { recursive: true });
  const temporary = `${binary}.${process.pid}.tmp`;
  try {
    await execa('cc', [...CFLAGS, '-o', temporary, SOURCE]);
  } catch (error) {
    throw new Error(
      `compiling the fnix agent failed; it needs a C compiler and static libc (apt-get install gcc libc6-dev): ${
        (error as { stderr?: string }).stderr ?? String(error)
      }`,
      { cause: error },
    );
  }
  await rename(temporary, binary);
  return binary;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}
