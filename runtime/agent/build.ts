/**
 * @module
 * Compiles fnix-agent (agent.c) into a static binary with the host's C compiler (runtime/compile-c.ts),
 * cached by the hash of the source, so it is compiled once per change, not once per start.
 */
import { fileURLToPath } from 'node:url';
import { compileStatic } from '../compile-c.ts';

const SOURCE = fileURLToPath(new URL('./agent.c', import.meta.url));

/** Returns the path of a compiled agent under `outDir`, compiling it when the source changed. */
export function buildAgent(outDir: string): Promise<string> {
  return compileStatic(SOURCE, outDir, 'fnix-agent');
}
