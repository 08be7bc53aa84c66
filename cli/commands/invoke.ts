/**
 * @module
 * `fnix invoke <fn> [path]`: one HTTP request to /fn/<fn>, curl's way: -X, -H, -d, --data-binary @file,
 * or stdin when it is piped (unless -n). It is made with node:http, which sends only the headers given
 * (no Accept-Encoding) and decodes nothing, so the response body goes to stdout byte for byte as the
 * function sent it. A gateway error (an answer with the x-fnix-error header) goes to stderr with its
 * code, message and invocation id; any other answer is the function's, its body on stdout whatever its
 * status; the exit code is not 0 for either from status 400.
 */
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { type Answer, chunksOf, ERROR_HEADER, INVOCATION_ID_HEADER } from '../client.ts';
import type { CliContext } from '../context.ts';
import { EXIT, usageError } from '../errors.ts';
import { readStdin, stdinIsGiven } from '../input.ts';

/** The invoke command's options. */
interface InvokeOptions {
  request?: string;
  header?: string[];
  data?: string;
  dataBinary?: string;
  key?: string;
  include?: boolean;
  /** false with -n, --no-stdin: stdin is never read. */
  stdin: boolean;
}

/** Registers `invoke`. */
export function registerInvoke(program: Command, context: CliContext): void {
  program
    .command('invoke')
    .description('call a function over HTTP; its body goes to stdout, byte for byte')
    .argument('<fn>', 'the function')
    .argument('[path]', 'the rest of the URL after /fn/<fn>, with a query if any (/a/b?x=1, or ?name=Ada)')
    .option('-X, --request <method>', 'the HTTP method (default: GET, or POST with a body)')
    .option('-H, --header <header>', "a request header, 'Name: value' (repeatable)", collect)
    .option('-d, --data <data>', 'the request body, as given')
    .option('--data-binary <@file>', 'the request body from a file (@path), from stdin (@-), or as given')
    .option('--key <key>', 'an invoke key for a private function (default: FNIX_KEY), sent as X-Fnix-Key')
    .option('-i, --include', 'print the response status and headers on stderr')
    .option('-n, --no-stdin', 'never read stdin (as ssh -n): for a loop that reads its own input from it')
    .addHelpText(
      'after',
      '\nWith no -d or --data-binary, a piped stdin is the body: echo hi | fnix invoke echo\n' +
        'Inside a loop fed by a pipe (... | while read f; do fnix invoke -n fn "?f=$f"; done), pass -n: else the first call reads the loop\'s input.\n',
    )
    .action(async (name: string, path: string | undefined, options: InvokeOptions) => {
      const client = await context.client();
      const body = await requestBody(options);
      const method = (options.request ?? (body ? 'POST' : 'GET')).toUpperCase();
      if (body && (method === 'GET' || method === 'HEAD')) throw usageError(`a ${method} request cannot have a body`, 'use -X POST (or PUT, ...)');
      const headers = parseHeaders(options.header ?? []);
      const key = options.key ?? client.settings.key;
      if (key) headers['x-fnix-key'] = key;
      const answer = await client.request(invokePath(name, path), { method, headers, body, token: false });
      if (options.include) context.output.err(describeHead(answer));
      // The gateway's own error, marked as such: whatever else answers is the function.
      if (answer.headers.has(ERROR_HEADER)) {
        const chunks: Uint8Array[] = [];
        for await (const chunk of chunksOf(answer.body, client.url)) chunks.push(chunk);
        throw client.errorOf(answer, Buffer.concat(chunks).toString('utf8'));
      }
      for await (const chunk of chunksOf(answer.body, client.url)) await writeOut(chunk);
      if (answer.status >= 400) {
        // The function's own error response, which is its output: its body went to stdout.
        const invocationId = answer.headers.get(INVOCATION_ID_HEADER);
        context.output.err(`fnix: ${name} answered ${answer.status} ${answer.statusText}${invocationId ? ` (invocation ${invocationId})` : ''}\n`);
        context.exitCode = EXIT.ERROR;
      }
    });
}

/** The path of an invocation: `/fn/<name>`, then `path` (a query alone is allowed: `?name=Ada`). */
export function invokePath(name: string, path: string | undefined): string {
  const base = `/fn/${encodeURIComponent(name)}`;
  if (!path) return base;
  if (path.startsWith('?')) return base + path;
  return `${base}/${path.replace(/^\/+/, '')}`;
}

/** `Name: value` headers as an object; a usage error for one without a colon. */
export function parseHeaders(lines: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw usageError(`-H ${JSON.stringify(line)} is not a header`, "write it as 'Name: value'");
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}

/** The request body from -d, --data-binary or a piped stdin (unless -n); undefined when there is none. */
async function requestBody(options: InvokeOptions): Promise<Buffer | undefined> {
  if (options.data !== undefined && options.dataBinary !== undefined) throw usageError('give -d or --data-binary, not both');
  if (options.data !== undefined) return Buffer.from(options.data);
  const binary = options.dataBinary;
  if (binary === '@-' && !options.stdin) throw usageError('--data-binary @- reads stdin, which -n (--no-stdin) forbids', 'give one or the other');
  if (binary === '@-') return readStdin();
  if (binary?.startsWith('@')) {
    try {
      return await readFile(binary.slice(1));
    } catch (error) {
      throw usageError(`cannot read --data-binary ${binary}: ${(error as Error).message}`);
    }
  }
  if (binary !== undefined) return Buffer.from(binary);
  if (options.stdin && stdinIsGiven()) return readStdin();
  return undefined;
}

/** The status line and headers as they were sent (names spelled as sent, repeats kept), as -i prints them. */
export function describeHead(answer: Pick<Answer, 'status' | 'statusText' | 'rawHeaders'>): string {
  const lines = [`HTTP ${answer.status} ${answer.statusText}`];
  for (let i = 0; i + 1 < answer.rawHeaders.length; i += 2) lines.push(`${answer.rawHeaders[i]}: ${answer.rawHeaders[i + 1]}`);
  return `${lines.join('\n')}\n\n`;
}

/** Writes to stdout, waiting while it is full. */
async function writeOut(chunk: Uint8Array): Promise<void> {
  if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
