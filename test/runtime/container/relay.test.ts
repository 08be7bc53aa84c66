/**
 * @module
 * runtime/container/relay.ts on a real unix socket, with the test in the agent's place: open() sends
 * an OPEN frame and resolves with the connection that answers with its id (the id taken off, the rest
 * of the stream intact both ways), OPEN_FAILED rejects it, connections with no such id are closed,
 * opens time out, and close() fails those still waiting.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FRAME, HEADER_SIZE } from '../../../runtime/agent/protocol.ts';
import { RELAY_SOCKET, RelayHub, RelayOpenError } from '../../../runtime/container/relay.ts';

let dir: string;
let path: string;
let hub: RelayHub | undefined;
const sockets = new Set<Socket>();

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fnix-relay-'));
  path = join(dir, RELAY_SOCKET);
});

afterEach(async () => {
  hub?.close();
  hub = undefined;
  for (const socket of sockets) socket.destroy();
  sockets.clear();
  await rm(dir, { recursive: true, force: true });
});

/** An OPEN frame, decoded. */
interface Open {
  id: number;
  port: number;
}

function decodeOpen(frame: Buffer): Open {
  expect(frame[0]).toBe(FRAME.OPEN);
  expect(frame[0]).toBe(0x06);
  expect(frame.readUInt32BE(1)).toBe(6);
  expect(frame.length).toBe(HEADER_SIZE + 6);
  return { id: frame.readUInt32BE(HEADER_SIZE), port: frame.readUInt16BE(HEADER_SIZE + 4) };
}

/** A hub on a fresh socket path; the frames it sends are kept, decoded. */
async function listen(): Promise<{ hub: RelayHub; opens: Open[] }> {
  const opens: Open[] = [];
  hub = await RelayHub.listen(path, process.getuid!(), (frame) => opens.push(decodeOpen(frame)));
  return { hub, opens };
}

/** Connects to the relay socket as the agent does. */
async function agentConnection(): Promise<Socket> {
  const socket = connect(path);
  sockets.add(socket);
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return socket;
}

/** A connection's id, as the agent writes it. */
function idBytes(id: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(id, 0);
  return bytes;
}

/** Everything `socket` carries until it ends. */
function readAll(socket: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('end', () => resolve(Buffer.concat(chunks)));
    socket.once('error', reject);
  });
}

/** Resolves when `socket` closes. */
function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) resolve();
    else socket.once('close', () => resolve());
  });
}

/** The RelayOpenError `promise` rejects with. */
async function openError(promise: Promise<unknown>): Promise<RelayOpenError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RelayOpenError);
  return error as RelayOpenError;
}

describe('RelayHub.listen', () => {
  it('listens at the path, readable and writable by its owner alone', async () => {
    await listen();
    const info = await stat(path);
    expect(info.isSocket()).toBe(true);
    expect(info.mode & 0o777).toBe(0o600);
    expect(info.uid).toBe(process.getuid!());
  });

  it('replaces a stale socket file left at the path', async () => {
    const first = await RelayHub.listen(path, process.getuid!(), () => {});
    // A hub that went without close() (a crash) leaves its file behind.
    const { hub } = await listen();
    expect((await stat(path)).isSocket()).toBe(true);
    first.close();
    hub.close();
  });
});

describe('RelayHub.open', () => {
  it('sends an OPEN frame with a fresh id and the port', async () => {
    const { hub, opens } = await listen();
    void hub.open(8080, 5000).catch(() => {});
    void hub.open(3000, 5000).catch(() => {});
    expect(opens).toHaveLength(2);
    expect(opens[0]!.port).toBe(8080);
    expect(opens[1]!.port).toBe(3000);
    expect(opens[0]!.id).not.toBe(opens[1]!.id);
    expect(opens[0]!.id).toBeGreaterThan(0);
  });

  it('resolves with the connection that sends its id, which reads exactly what follows the id', async () => {
    const { hub, opens } = await listen();
    const opening = hub.open(8080, 5000);
    const agent = await agentConnection();
    agent.end(Buffer.concat([idBytes(opens[0]!.id), Buffer.from('HTTP/1.1 200 OK\r\n\r\nbody')]));
    const socket = await opening;
    expect((await readAll(socket)).toString()).toBe('HTTP/1.1 200 OK\r\n\r\nbody');
  });

  it('carries bytes the other way, from the host to the agent', async () => {
    const { hub, opens } = await listen();
    const opening = hub.open(8080, 5000);
    const agent = await agentConnection();
    agent.write(idBytes(opens[0]!.id));
    const socket = await opening;
    const received = readAll(agent);
    socket.end('GET / HTTP/1.1\r\n\r\n');
    expect((await received).toString()).toBe('GET / HTTP/1.1\r\n\r\n');
  });

  it('takes an id that comes a byte at a time, and loses none of the data that follows', async () => {
    const { hub, opens } = await listen();
    const opening = hub.open(8080, 5000);
    const agent = await agentConnection();
    const id = idBytes(opens[0]!.id);
    for (const byte of [...id, ...Buffer.from('xy')]) {
      agent.write(Buffer.from([byte]));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const socket = await opening;
    const data = readAll(socket);
    agent.end('z');
    expect((await data).toString()).toBe('xyz');
  });

  it('keeps the data that came with the id until the connection is read, however late', async () => {
    const { hub, opens } = await listen();
    const opening = hub.open(8080, 5000);
    const agent = await agentConnection();
    agent.end(Buffer.concat([idBytes(opens[0]!.id), Buffer.from('early bytes')]));
    const socket = await opening;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await readAll(socket)).toString()).toBe('early bytes');
  });

  it('gives each open the connection with its id, whatever order they come in', async () => {
    const { hub, opens } = await listen();
    const first = hub.open(8080, 5000);
    const second = hub.open(8080, 5000);
    const late = await agentConnection();
    const early = await agentConnection();
    early.end(Buffer.concat([idBytes(opens[1]!.id), Buffer.from('second')]));
    late.end(Buffer.concat([idBytes(opens[0]!.id), Buffer.from('first')]));
    const [a, b] = await Promise.all([first, second]);
    expect((await readAll(a)).toString()).toBe('first');
    expect((await readAll(b)).toString()).toBe('second');
  });

  it('closes a connection whose id no open waits for', async () => {
    const { hub, opens } = await listen();
    const opening = hub.open(8080, 5000);
    const stranger = await agentConnection();
    stranger.write(Buffer.concat([idBytes(opens[0]!.id + 1000), Buffer.from('hi')]));
    await closed(stranger);
    // The open still waits for its own connection.
    const agent = await agentConnection();
    agent.end(Buffer.concat([idBytes(opens[0]!.id), Buffer.from('mine')]));
    expect((await readAll(await opening)).toString()).toBe('mine');
  });

  it('hands an id out once: a second connection with it is closed', async () => {
    const { hub, opens } = await listen();
    const opening = hub.open(8080, 5000);
    const agent = await agentConnection();
    agent.write(idBytes(opens[0]!.id));
    await opening;
    const again = await agentConnection();
    again.write(idBytes(opens[0]!.id));
    await closed(again);
  });

  it('closes a connection that ends without a byte', async () => {
    await listen();
    const agent = await agentConnection();
    agent.end();
    await closed(agent);
  });

  // Skipped: a connection that ends after 1 to 3 bytes makes #identify's socket.read(4) return the
  // short rest, and readUInt32BE throws in the gateway process (an uncaught exception, which any
  // process in the container can cause). Unskip once relay.ts checks head.length.
  it('closes a connection that ends before it has sent a whole id', async () => {
    const { hub, opens } = await listen();
    const opening = hub.open(8080, 5000);
    for (const bytes of [[0], [0, 0], [0, 0, 0]]) {
      const agent = await agentConnection();
      agent.end(Buffer.from(bytes));
      await closed(agent);
    }
    const agent = await agentConnection();
    agent.end(Buffer.concat([idBytes(opens[0]!.id), Buffer.from('still fine')]));
    expect((await readAll(await opening)).toString()).toBe('still fine');
  });

  it('rejects with ETIMEDOUT when no connection comes in time, and then refuses the late one', async () => {
    const { hub, opens } = await listen();
    const error = await openError(hub.open(8080, 50));
    expect(error.errno).toBe('ETIMEDOUT');
    expect(error.message).toBe('no connection to port 8080 within 50 ms');
    const late = await agentConnection();
    late.write(idBytes(opens[0]!.id));
    await closed(late);
  });
});

describe('RelayHub.handleOpenFailed', () => {
  it('rejects the open with ECONNREFUSED: nothing listens on the port', async () => {
    const { hub, opens } = await listen();
    const opening = hub.open(8080, 5000);
    hub.handleOpenFailed(opens[0]!.id, osConstants.errno.ECONNREFUSED);
    const error = await openError(opening);
    expect(error.errno).toBe('ECONNREFUSED');
    expect(error.message).toBe('nothing listens on the port');
    expect(error.name).toBe('RelayOpenError');
  });

  it('names other errors, and numbers it does not know', async () => {
    const { hub, opens } = await listen();
    const unreachable = hub.open(8080, 5000);
    const odd = hub.open(8080, 5000);
    hub.handleOpenFailed(opens[0]!.id, osConstants.errno.ENETUNREACH);
    hub.handleOpenFailed(opens[1]!.id, 99_999);
    expect(await openError(unreachable)).toMatchObject({ errno: 'ENETUNREACH', message: 'the agent could not connect (ENETUNREACH)' });
    expect(await openError(odd)).toMatchObject({ errno: 'errno 99999' });
  });

  it('ignores an id that is not waiting, and leaves the others be', async () => {
    const { hub, opens } = await listen();
    const opening = hub.open(8080, 5000);
    hub.handleOpenFailed(opens[0]!.id + 7, osConstants.errno.ECONNREFUSED);
    const agent = await agentConnection();
    agent.end(Buffer.concat([idBytes(opens[0]!.id), Buffer.from('ok')]));
    expect((await readAll(await opening)).toString()).toBe('ok');
  });
});

describe('RelayHub.close', () => {
  it('rejects the opens under way with ENOTCONN, and every later one', async () => {
    const { hub } = await listen();
    const pending = [hub.open(8080, 5000), hub.open(8081, 5000)];
    hub.close();
    for (const opening of pending) expect(await openError(opening)).toMatchObject({ errno: 'ENOTCONN', message: 'the container is gone' });
    expect((await openError(hub.open(8080, 5000))).errno).toBe('ENOTCONN');
  });

  it('stops listening and removes the socket file', async () => {
    const { hub } = await listen();
    hub.close();
    hub.close();
    for (let i = 0; i < 100; i += 1) {
      if (
        !(await stat(path).then(
          () => true,
          () => false,
        ))
      )
        break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
    const socket = connect(path);
    sockets.add(socket);
    await expect(new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
