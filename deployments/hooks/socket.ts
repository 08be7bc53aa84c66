/**
 * @module
 * The other end of the repository's hooks (hook.mjs): a unix socket in the state folder, which only root
 * can reach. A hook sends one JSON line (which hook, the push's id, its ref updates, the quarantine
 * variables) and gets back lines of progress, `{"line":"…"}`, and its exit code, `{"exit":0}`.
 */
import { realpathSync } from 'node:fs';
import { chmod, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { isAbsolute, resolve } from 'node:path';
import { describeFsError, errnoCode } from '../../runtime/fs-errors.ts';
import type { Logger } from '../../runtime/log.ts';
import { QUARANTINE_VARIABLES, type QuarantineEnv } from '../repository.ts';
import type { PushDeploys, RefUpdate } from '../push.ts';
import { MAX_SOCKET_PATH_BYTES } from '../../runtime/unix-socket.ts';

/** A request from a hook. */
interface HookRequest {
  hook: 'pre-receive' | 'post-receive';
  pushId: string;
  updates: RefUpdate[];
  env: Record<string, string>;
}

/** Listens on `socketPath` for hooks; resolves once listening. */
export async function startHookServer(socketPath: string, gitDir: string, pushes: PushDeploys, log: Logger): Promise<Server> {
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
    throw new Error(
      `the deploy socket path ${socketPath} is longer than ${MAX_SOCKET_PATH_BYTES} bytes, which unix sockets allow; use a shorter FNIX_STATE_DIR`,
    );
  }
  await rm(socketPath, { force: true });
  const server = createServer((socket) => {
    serve(socket, pushes, log, gitDir).catch((error: unknown) => log.error('deploy hook connection failed', { error: String(error) }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject).listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // Without a listener, a later error of the listening socket would end the process.
  server.on('error', (error: Error) => log.error('the deploy socket reported an error', { error: String(error) }));
  await chmod(socketPath, 0o600);
  return server;
}

async function serve(socket: Socket, pushes: PushDeploys, log: Logger, gitDir: string): Promise<void> {
  socket.on('error', () => {});
  socket.setEncoding('utf8');
  const gone = new AbortController();
  socket.once('close', () => gone.abort());
  const send = (message: object) => {
    if (!socket.destroyed) socket.write(`${JSON.stringify(message)}\n`);
  };
  const progress = (line: string) => send({ line });
  let request: HookRequest;
  try {
    request = parseRequest(await readLine(socket));
  } catch (error) {
    send({ line: `fnix: ${(error as Error).message}`, exit: 1 });
    socket.end();
    return;
  }
  try {
    if (request.hook === 'pre-receive') {
      const accepted = await pushes.preReceive(request.pushId, request.updates, quarantineEnv(request.env, gitDir), progress, gone.signal);
      send({ exit: accepted ? 0 : 1 });
    } else {
      await pushes.postReceive(request.pushId, progress);
      send({ exit: 0 });
    }
  } catch (error) {
    if (errnoCode(error)) {
      // A write that failed for a reason outside fnix (a full disk, say): the pusher is told it in words.
      log.error('a push could not be deployed', { hook: request.hook, error: String(error) });
      const outcome = request.hook === 'pre-receive' ? 'the push was refused' : 'main moved, but its deployment could not go live';
      send({ line: `fnix: ${outcome}: ${describeFsError(error)}; the functions being served are unchanged`, exit: 1 });
    } else {
      log.error('deploy hook failed', { hook: request.hook, error: String(error), stack: (error as Error).stack });
      send({ line: `fnix: internal error while deploying (${(error as Error).message}); the gateway log has the details`, exit: 1 });
    }
  }
  socket.end();
}

function readLine(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    const onData = (chunk: string) => {
      buffer += chunk;
      const newline = buffer.indexOf('\n');
      if (newline >= 0) {
        socket.off('data', onData);
        resolve(buffer.slice(0, newline));
      } else if (buffer.length > 16 * 1024 * 1024) reject(new Error('hook request too large'));
    };
    socket.on('data', onData);
    socket.once('end', () => reject(new Error('the hook sent no request')));
  });
}

function parseRequest(line: string): HookRequest {
  const value = JSON.parse(line) as HookRequest;
  if (value.hook !== 'pre-receive' && value.hook !== 'post-receive') throw new Error('unknown hook');
  if (typeof value.pushId !== 'string' || value.pushId === '') {
    throw new Error('this push did not come through the gateway: push to http://<gateway>/git/functions.git');
  }
  if (!Array.isArray(value.updates)) throw new Error('malformed hook request');
  for (const update of value.updates) {
    if (!/^[0-9a-f]{40}$/.test(update.old) || !/^[0-9a-f]{40}$/.test(update.new) || typeof update.ref !== 'string') {
      throw new Error('malformed ref update');
    }
  }
  return value;
}

/** The quarantine variables, and only those: paths inside the repository's objects folder. */
function quarantineEnv(env: Record<string, string>, gitDir: string): QuarantineEnv {
  const result: QuarantineEnv = {};
  // git may name the folder through its real path, if the state folder's path has a link in it.
  const objects = [resolve(gitDir, 'objects'), realpathSync(resolve(gitDir, 'objects'))].map((dir) => `${dir}/`);
  for (const name of QUARANTINE_VARIABLES) {
    const value = env?.[name];
    if (typeof value !== 'string') continue;
    const inside = value.split(':').every((part) => isAbsolute(part) && objects.some((dir) => `${resolve(part)}/`.startsWith(dir)));
    if (inside) result[name] = value;
  }
  return result;
}
