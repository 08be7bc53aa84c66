/**
 * @module
 * Git's smart HTTP protocol at `/git/functions.git`, served by git's own `git http-backend` as a CGI
 * program: clone, fetch and push work with a stock git client. Every request needs the deploy token
 * (HTTP Basic, any user name); REMOTE_USER, which makes http-backend accept pushes, is set only after
 * that check, and never from a client's header.
 */
import { Readable } from 'node:stream';
import type { HttpBindings } from '@hono/node-server';
import type { Context } from 'hono';
import { execa } from 'execa';
import { nanoid } from 'nanoid';
import { REPOSITORY_NAME } from '../../deployments/repository.ts';
import type { Deployments } from '../../deployments/deployments.ts';
import { FnixError } from '../../runtime/errors.ts';
import type { Logger } from '../../runtime/log.ts';
import { LineSplitter } from '../../runtime/stdio/line-splitter.ts';
import type { TokenGuard } from '../auth/guard.ts';
import { CgiHeadParser } from '../cgi/response.ts';
import { bodyTooLarge } from '../errors.ts';

/** Where the repository is served. */
export const GIT_PATH = `/git/${REPOSITORY_NAME}`;

/** What the git endpoint needs. */
export interface GitEndpointOptions {
  /** The folder holding functions.git (GIT_PROJECT_ROOT). */
  gitRoot: string;
  token: TokenGuard;
  /** Told when a push's request is over (deployments/push.ts settles a push whose post-receive never came). */
  deployments: Pick<Deployments, 'pushEnded'>;
  log: Logger;
  /** The largest request body taken (a push's pack is bounded by receive.maxInputSize as well). */
  maxBodyBytes: number;
}

/** The handler for `ANY /git/functions.git/*`. */
export function createGitHandler(options: GitEndpointOptions) {
  const { log } = options;
  return async function serveGit(c: Context<{ Bindings: HttpBindings }>): Promise<Response> {
    options.token.basic({ route: 'git', authorization: c.req.header('authorization'), address: c.env.incoming.socket.remoteAddress ?? '' });
    const url = new URL(c.req.url);
    const pathInfo = url.pathname.slice('/git'.length);
    const pushId = nanoid();
    const header = (name: string) => c.req.header(name) ?? '';
    const incoming = c.env.incoming;
    const env: Record<string, string> = {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: options.gitRoot,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_PROJECT_ROOT: options.gitRoot,
      GIT_HTTP_EXPORT_ALL: '1',
      GATEWAY_INTERFACE: 'CGI/1.1',
      REQUEST_METHOD: c.req.method,
      PATH_INFO: pathInfo,
      QUERY_STRING: url.search.slice(1),
      CONTENT_TYPE: header('content-type'),
      HTTP_CONTENT_ENCODING: header('content-encoding'),
      GIT_PROTOCOL: header('git-protocol'),
      // Checked above: the token is the only identity there is.
      REMOTE_USER: 'fnix',
      REMOTE_ADDR: incoming.socket.remoteAddress ?? '',
      // The hooks hand it back, so the gateway knows which request a push belongs to.
      FNIX_PUSH_ID: pushId,
    };
    const length = header('content-length');
    if (/^\d+$/.test(length)) env['CONTENT_LENGTH'] = length;
    const child = execa('git', ['http-backend'], { env, extendEnv: false, buffer: false, reject: false, stdin: 'pipe' });
    let exited = false;
    // Any request may be a push (info/refs starts none, but it costs a map lookup to be sure).
    const ended = child.then(async () => {
      exited = true;
      await options.deployments.pushEnded(pushId);
    });
    ended.catch((error: unknown) => log.error('settling a push failed', { error: String(error) }));
    // A client that goes away does not leave git blocked on a full pipe.
    const stop = () => {
      if (!exited) child.kill();
    };
    c.req.raw.signal.addEventListener('abort', stop, { once: true });
    // git's complaints go to the log, line by line and bounded.
    const lines = new LineSplitter({ onLine: (line) => log.warn('git http-backend', { line }), maxLineBytes: 500 });
    child.stderr!.on('data', (chunk: Buffer) => lines.write(chunk));
    child.stderr!.on('end', () => lines.end());
    let tooLarge = false;
    pumpBody(c.req.raw.body, child.stdin!, options.maxBodyBytes, () => {
      tooLarge = true;
      stop();
    });

    const stdout = child.stdout![Symbol.asyncIterator]();
    const parser = new CgiHeadParser();
    let head: ReturnType<CgiHeadParser['push']>;
    try {
      for (;;) {
        const { value, done } = await stdout.next();
        if (done) {
          if (tooLarge) throw bodyTooLarge(options.maxBodyBytes);
          // Why, for the log: git failed, or could not even start (no file descriptor left, say).
          const result = await child;
          log.error('git http-backend ended without a response', { exitCode: result.exitCode, error: result.failed ? result.shortMessage : undefined });
          throw new FnixError('INTERNAL_ERROR', 'git http-backend ended without a response; the gateway log has its output');
        }
        head = parser.push(value as Buffer);
        if (head) break;
      }
    } catch (error) {
      stop();
      if (error instanceof FnixError && error.code === 'FUNCTION_BAD_RESPONSE') {
        throw new FnixError('INTERNAL_ERROR', `git http-backend answered with something other than CGI headers: ${error.message}`);
      }
      throw error;
    }
    const { rest } = head;
    const body = Readable.from(
      (async function* () {
        let complete = false;
        try {
          if (rest.length > 0) yield rest;
          for (let next = await stdout.next(); !next.done; next = await stdout.next()) yield next.value as Buffer;
          complete = true;
        } finally {
          if (!complete) stop(); // the response was cancelled: git goes rather than block on its pipe
        }
      })(),
    );
    return new Response(Readable.toWeb(body) as ReadableStream, { status: head.head.status, headers: head.head.headers });
  };
}

/** Streams the request body to git's stdin, up to `limit` bytes; beyond it, `abort`. */
function pumpBody(body: ReadableStream<Uint8Array> | null, stdin: NodeJS.WritableStream, limit: number, abort: () => void): void {
  if (!body) {
    stdin.end();
    return;
  }
  let total = 0;
  const source = Readable.fromWeb(body as never);
  source.on('data', (chunk: Buffer) => {
    total += chunk.length;
    if (total > limit) {
      source.destroy();
      abort();
    }
  });
  source.on('error', () => abort());
  source.pipe(stdin as never);
  (stdin as unknown as { on(event: string, listener: () => void): void }).on('error', () => {});
}
