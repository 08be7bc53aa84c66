/**
 * @module
 * What the CLI reads from its user: stdin when it is a pipe or a file, and a prompt that does not echo
 * (for tokens and secret values, which then never land in shell history).
 */
import { fstatSync } from 'node:fs';
import { buffer } from 'node:stream/consumers';
import { usageError } from './errors.ts';

/**
 * True when stdin is a pipe (`echo hi | fnix ...`) or a file (`fnix ... < file`): input was given. A
 * terminal is not, nor a socket or nothing, which is what a process started by another program without
 * input often has; reading that would wait for ever.
 */
export function stdinIsGiven(): boolean {
  try {
    const stat = fstatSync(0);
    return stat.isFIFO() || stat.isFile();
  } catch {
    return false;
  }
}

/** All of stdin, byte for byte. */
export function readStdin(): Promise<Buffer> {
  return buffer(process.stdin);
}

/**
 * Asks `question` on the terminal and reads a line without echoing it. A usage error when there is no
 * terminal to ask on; `what` names the value, for that message.
 */
export async function promptHidden(question: string, what: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) throw usageError(`no ${what} given and no terminal to ask for it on`, `pipe it in: printf %s "$VALUE" | fnix ...`);
  process.stderr.write(question);
  stdin.setRawMode(true);
  stdin.resume();
  let typed = '';
  try {
    return await new Promise<string>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        for (const char of chunk.toString('utf8')) {
          if (char === '\r' || char === '\n') {
            stdin.off('data', onData);
            return resolve(typed);
          }
          if (char === '\u0003') {
            stdin.off('data', onData);
            return reject(usageError(`no ${what} given (interrupted)`));
          }
          if (char === '\u007f' || char === '\b') typed = typed.slice(0, -1);
          else typed += char;
        }
      };
      stdin.on('data', onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write('\n');
  }
}
