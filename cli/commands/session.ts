/**
 * @module
 * `fnix session <fn>`: this terminal, or these pipes, attached to a function's stdio over WebSocket with
 * the channel protocol (docs/sessions.md); exits with the function's exit code. On a terminal it is tty
 * mode: raw keystrokes (Ctrl-C included) go to the function's terminal, and resizes follow.
 */
import type { Command } from 'commander';
import WebSocket from 'ws';
import type { CliContext } from '../context.ts';
import { unreachable } from '../client.ts';
import { CliError, parseGatewayError } from '../errors.ts';

/** The channels of the protocol. */
const CHANNEL = { STDIN: 0, STDOUT: 1, STDERR: 2, STATUS: 3, RESIZE: 4 } as const;
/** Piped input waits while more than this is queued on the socket, and resumes below half of it. */
const HIGH_WATER = 1 << 20;

/** Registers `session`. */
export function registerSession(program: Command, context: CliContext): void {
  program
    .command('session')
    .description("attach this terminal (or these pipes) to a function's stdio; exits with its exit code")
    .argument('<fn>', 'the function, with a query if any (shell, or shell?x=1)')
    .option('--key <key>', 'an invoke key for a private function (default: FNIX_KEY)')
    .action(async (target: string, options: { key?: string }) => {
      const client = await context.client();
      const [name = '', query = ''] = target.split('?');
      const key = options.key ?? client.settings.key;
      context.exitCode = await runSession({ url: client.url, name, query, key, output: context.output });
    });
}

/** Runs one session to its end; resolves with the function's exit code (1 when it has none). */
function runSession(options: { url: string; name: string; query: string; key: string | undefined; output: CliContext['output'] }): Promise<number> {
  const { url, name, output } = options;
  const tty = process.stdin.isTTY === true && process.stdout.isTTY === true;
  const params = new URLSearchParams(options.query);
  if (tty) {
    params.set('tty', '1');
    params.set('cols', String(process.stdout.columns));
    params.set('rows', String(process.stdout.rows));
  }
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/sessions/${encodeURIComponent(name)}?${params}`, {
    headers: options.key ? { 'x-fnix-key': options.key } : {},
  });
  const send = (channel: number, payload: Uint8Array | string = '') => ws.send(Buffer.concat([Buffer.of(channel), Buffer.from(payload)]));
  let exitCode = 1;
  // Output piped into a reader that went away (`| head`): the session ends, without a stack trace.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', () => {
      ws.terminate();
      process.exit(exitCode);
    });
  }
  return new Promise<number>((resolve, reject) => {
    let settled = false;
    const finish = (result: number | CliError) => {
      if (settled) return;
      settled = true;
      if (tty) process.stdin.setRawMode(false);
      process.stdin.destroy();
      if (typeof result === 'number') resolve(result);
      else reject(result);
    };
    ws.on('open', () => {
      if (tty) {
        process.stdin.setRawMode(true);
        process.stdout.on('resize', () => send(CHANNEL.RESIZE, JSON.stringify({ cols: process.stdout.columns, rows: process.stdout.rows })));
      }
      process.stdin.on('data', (chunk: Buffer) => {
        send(CHANNEL.STDIN, chunk);
        // Piped input goes no faster than the socket takes it.
        if (ws.bufferedAmount > HIGH_WATER) {
          process.stdin.pause();
          const wait = setInterval(() => {
            if (ws.bufferedAmount > HIGH_WATER / 2) return;
            clearInterval(wait);
            process.stdin.resume();
          }, 10);
        }
      });
      process.stdin.on('end', () => send(CHANNEL.STDIN)); // an empty stdin frame: end of input
    });
    ws.on('message', (frame: Buffer) => {
      const payload = frame.subarray(1);
      if (frame[0] === CHANNEL.STDOUT) process.stdout.write(payload);
      else if (frame[0] === CHANNEL.STDERR) process.stderr.write(payload);
      else if (frame[0] === CHANNEL.STATUS) {
        const status = JSON.parse(payload.toString()) as { exitCode?: number; signal?: string; error?: { code: string; message: string } };
        if (status.exitCode !== undefined) exitCode = status.exitCode;
        else output.err(`\r\n[fnix] ${status.signal ? `killed by ${status.signal}` : `${status.error?.code}: ${status.error?.message}`}\n`);
      }
    });
    ws.on('unexpected-response', (_request, response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk));
      response.on('end', () => {
        const status = response.statusCode ?? 0;
        const parsed = parseGatewayError(body);
        finish(
          parsed
            ? new CliError(parsed.code, parsed.message, {
                status,
                details: parsed.details,
                invocationId: response.headers['x-fnix-invocation-id'] as string | undefined,
              })
            : new CliError(`HTTP_${status}`, `the session was refused: ${status} ${body.slice(0, 200)}`, { status }),
        );
      });
    });
    ws.on('error', (error: Error & { code?: string }) => {
      if (error.code === 'ECONNREFUSED' || error.code === 'ENOTFOUND' || error.code === 'EHOSTUNREACH' || error.code === 'ECONNRESET')
        finish(unreachable(url, { cause: error }));
      else output.err(`[fnix] ${error.message}\n`);
    });
    ws.on('close', () => finish(exitCode));
  });
}
