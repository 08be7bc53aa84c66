/**
 * @module
 * Compiles one C file into a static binary with the host's C compiler: fnix-agent (runtime/agent), and
 * the benchmark's floor server. The result is cached by the hash of the source and the flags, so it is
 * compiled once per change, not once per start.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { execa } from 'execa';

const CFLAGS = ['-static', '-O2', '-Wall', '-Wextra', '-Werror'];

/**
 * Returns the path of `source` compiled under `outDir` as `<name>-<hash>`, compiling it when no binary
 * of that source and these flags is there yet. The binary appears whole or not at all (a temporary file,
 * then a rename), so concurrent builds cannot see a half-written one.
 */
export async function compileStatic(source: string, outDir: string, name: string): Promise<string> {
  const text = await readFile(source);
  const hash = createHash('sha256').update(text).update(CFLAGS.join(' ')).digest('hex').slice(0, 16);
  const binary = join(outDir, `${name}-${hash}`);
  if (await isFile(binary)) return binary;
  await mkdir(outDir, { recursive: true });
  const temporary = `${binary}.${process.pid}.tmp`;
  try {
    await execa('cc', [...CFLAGS, '-o', temporary, source]);
  } catch (error) {
    throw new Error(
      `compiling ${name} (${basename(source)}) failed; it needs a C compiler and static libc (apt-get install gcc libc6-dev): ${(error as { stderr?: string }).stderr ?? String(error)}`,
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
