/**
 * @module
 * The host's end of a container's relays: connections to a server listening on the container's own
 * loopback, which nothing outside the container can reach (it runs with `--network none`). The host
 * listens on a unix socket in the container's control folder (mounted read-only at /run/fnix) and
 * sends the agent an OPEN frame; the agent connects to 127.0.0.1:<port>, then to this socket, and
 * writes the OPEN's id as the connection's first 4 bytes. What follows is the server's byte stream.
 *
 * Node cannot receive file descriptors over a unix socket, so the agent cannot simply hand the host its
 * connection: it connects to the host instead, and copies bytes (runtime/agent/agent.c). A process in
 * the container may connect to the socket too (it runs as the agent's uid), but only as what it
 * already is, the function's own server: a connection whose id no OPEN is waiting for is closed.
 */
import { chmod, chown, unlink } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import type { RelaySink } from '../agent/connection.ts';
import { encodeOpen } from '../agent/protocol.ts';

/** The relay socket's name in a container's control folder (/run/fnix/relay.sock inside). */
export const RELAY_SOCKET = 'relay.sock';
/** How long an accepted connection has to say which OPEN it answers. */
const ID_DEADLINE_MS = 2000;
/** Connections that have not said which OPEN they answer, at most (the rest are closed at once). */
const MAX_UNIDENTIFIED = 64;

/** Why a relay could not be opened: `errno` names the agent's failure (ECONNREFUSED: nothing listens). */
export class RelayOpenError extends Error {
  override name = 'RelayOpenError';
  readonly errno: string;

  constructor(errno: string, message: string) {
    super(message);
    this.errno = errno;
  }
}

interface PendingOpen {
  resolve: (socket: Socket) => void;
  reject: (error: RelayOpenError) => void;
  timer: NodeJS.Timeout;
}

/** Opens relays into one container. */
export class RelayHub implements RelaySink {
  readonly #server: Server;
  readonly #path: string;
  readonly #send: (frame: Buffer) => void;
  readonly #pending = new Map<number, PendingOpen>();
  #nextId = 1;
  #unidentified = 0;
  #closed = false;

  private constructor(server: Server, path: string, send: (frame: Buffer) => void) {
    this.#server = server;
    this.#path = path;
    this.#send = send;
    server.on('connection', (socket) => this.#identify(socket));
  }

  /** Listens at `path` (inside the control folder), reachable by `uid` alone; `send` sends the agent a frame. */
  static async listen(path: string, uid: number, send: (frame: Buffer) => void): Promise<RelayHub> {
    await unlink(path).catch(() => {});
    const server = createServer({ pauseOnConnect: false });
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, () => resolve()));
    server.on('error', () => {});
    try {
      await chown(path, uid, uid);
      await chmod(path, 0o600);
    } catch (error) {
      server.close();
      throw error;
    }
    return new RelayHub(server, path, send);
  }

  /**
   * A connection to 127.0.0.1:`port` inside the container. Rejects with a {@link RelayOpenError}:
   * ECONNREFUSED when nothing listens there, ETIMEDOUT when the agent did not connect within `timeoutMs`.
   */
  open(port: number, timeoutMs: number): Promise<Socket> {
    if (this.#closed) return Promise.reject(new RelayOpenError('ENOTCONN', 'the container is gone'));
    const id = this.#nextId;
    this.#nextId = this.#nextId >= 0xffff_fffe ? 1 : this.#nextId + 1;
    return new Promise<Socket>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new RelayOpenError('ETIMEDOUT', `no connection to port ${port} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      this.#send(encodeOpen(id, port));
    });
  }

  /** The agent could not open relay `id`. */
  handleOpenFailed(id: number, errno: number): void {
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    const name = errnoName(errno);
    pending.reject(new RelayOpenError(name, name === 'ECONNREFUSED' ? 'nothing listens on the port' : `the agent could not connect (${name})`));
  }

  /** Stops listening and fails every open under way (the container is gone or going). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const [id, pending] of this.#pending) {
      this.#pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(new RelayOpenError('ENOTCONN', 'the container is gone'));
    }
    this.#server.close();
    void unlink(this.#path).catch(() => {});
  }

  /** Reads an accepted connection's id, and hands the connection to the open that waits for it. */
  #identify(socket: Socket): void {
    socket.on('error', () => {});
    if (this.#closed || this.#unidentified >= MAX_UNIDENTIFIED) {
      socket.destroy();
      return;
    }
    this.#unidentified += 1;
    const done = () => {
      this.#unidentified -= 1;
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
    };
    const timer = setTimeout(() => {
      done();
      socket.destroy();
    }, ID_DEADLINE_MS);
    const onEnd = () => {
      done();
      socket.destroy();
    };
    // 'readable' and read(4), not 'data': the id is taken off and nothing more, and once the listener
    // is gone the socket flows again for whoever reads it next (Node resets it on the next tick).
    const onReadable = () => {
      const head = socket.read(4) as Buffer | null;
      if (!head) return;
      done();
      // At the stream's end read(4) returns what is left, which may be fewer than 4 bytes.
      if (head.length < 4) {
        socket.destroy();
        return;
      }
      const id = head.readUInt32BE(0);
      const pending = this.#pending.get(id);
      if (!pending) {
        socket.destroy();
        return;
      }
      this.#pending.delete(id);
      clearTimeout(pending.timer);
      socket.setNoDelay(true);
      pending.resolve(socket);
    };
    socket.on('readable', onReadable);
    socket.on('end', onEnd);
  }
}

function errnoName(errno: number): string {
  const entry = Object.entries(osConstants.errno).find(([, value]) => value === errno);
  return entry ? entry[0] : `errno ${errno}`;
}
