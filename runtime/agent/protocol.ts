/**
 * @module
 * The wire protocol between the host and fnix-agent (runtime/agent/agent.c), over one unix socket per
 * container. Every frame, in both directions, is `[type:u8][length:u32 big-endian][payload]`.
 *
 * Host to agent:
 * - SPAWN: start the invocation's command (see {@link encodeSpawn}); only when the agent is ready. It
 *   may carry files (the function's secrets), which the agent writes in /run/secrets just before the
 *   fork and removes after the invocation.
 * - STDIN: bytes for the child's stdin; an empty payload closes stdin. The host may have at most
 *   the agent's announced window of stdin bytes unacknowledged (see CREDIT).
 * - SIGNAL: one byte, a signal number, sent to the child's process group (tty: the foreground group).
 * - RESIZE: `[cols:u16][rows:u16]`, for tty invocations.
 * - KILL: kill every process of the invocation.
 * - OPEN: `[id:u32][port:u16]`, open a relay to 127.0.0.1:port inside the container: the agent connects
 *   there, then to the host's relay socket, and writes `id` (u32) as that connection's first bytes.
 *   Only while an invocation runs; every relay closes when it ends.
 *
 * Agent to host:
 * - HELLO: `"fnix-agent <version> <stdin window>"`, once, when the agent connects.
 * - STDOUT, STDERR: output bytes, in order.
 * - SPAWNED: `[pid:u32]`, the child's pid inside the container.
 * - EXIT: `[signaled:u8][code or signal:u32][killed:u8]`, after every process is gone and output is drained.
 * - READY: `[clean:u8]`, after /tmp, /dev/shm and /run/secrets were emptied; clean is 0 when they could
 *   not be (the container is then retired: the next invocation must not find the last one's secrets).
 * - CREDIT: `[bytes:u32]`, stdin bytes written to the child (or discarded because it closed stdin).
 * - OPEN_FAILED: `[id:u32][errno:u32]`, the relay OPEN `id` asked for could not be made.
 */

export const FRAME = {
  SPAWN: 0x01,
  STDIN: 0x02,
  SIGNAL: 0x03,
  RESIZE: 0x04,
  KILL: 0x05,
  OPEN: 0x06,
  HELLO: 0x81,
  STDOUT: 0x82,
  STDERR: 0x83,
  SPAWNED: 0x84,
  EXIT: 0x85,
  READY: 0x86,
  CREDIT: 0x87,
  OPEN_FAILED: 0x88,
} as const;

export const HEADER_SIZE = 5;
/** The largest frame either side accepts; the agent exits on a bigger one, the host drops the agent. */
export const MAX_FRAME = 1 << 20;

/** What the agent should run. */
export interface SpawnRequest {
  argv: readonly string[];
  /** The complete environment; nothing is inherited. */
  env: Readonly<Record<string, string>>;
  cwd: string;
  /** Run on a pseudo-terminal of this size instead of pipes. */
  tty?: { cols: number; rows: number } | undefined;
  /**
   * Files the agent writes in /run/secrets before the fork (mode 0400, the container's uid), and
   * removes after the invocation. Names are file names (no `/`, not `.` or `..`).
   */
  files?: readonly SpawnFile[] | undefined;
}

/** One file of a SPAWN request. */
export interface SpawnFile {
  name: string;
  data: Uint8Array;
}

/** SPAWN's flags: bit 0, a tty; bit 1, files follow the environment. */
const SPAWN_TTY = 1;
const SPAWN_FILES = 2;

/** Encodes one frame. */
export function encodeFrame(type: number, payload?: Uint8Array): Buffer {
  const length = payload?.length ?? 0;
  const frame = Buffer.allocUnsafe(HEADER_SIZE + length);
  frame[0] = type;
  frame.writeUInt32BE(length, 1);
  if (payload) frame.set(payload, HEADER_SIZE);
  return frame;
}

/**
 * Encodes a SPAWN payload: `[flags:u8][cols:u16][rows:u16][argc:u16][envc:u16]`, then cwd, argv and
 * `NAME=value` env entries as NUL-terminated strings; with files (flag bit 1), then `[filec:u16]` and
 * each file as its NUL-terminated name, `[length:u32]` and its bytes. Strings holding NUL are refused
 * here, since they would shift every field after them; so are file names that are not plain names,
 * and a frame above {@link MAX_FRAME}. The error messages quote argv, never the env or the files,
 * which may hold secrets.
 */
export function encodeSpawn(request: SpawnRequest): Buffer {
  const strings = [request.cwd, ...request.argv];
  for (const name in request.env) strings.push(`${name}=${request.env[name]}`);
  const files = request.files ?? [];
  let length = SPAWN_HEAD;
  for (const [index, s] of strings.entries()) {
    if (s.includes('\0')) {
      const what = index <= request.argv.length ? JSON.stringify(s) : `the variable ${s.slice(0, s.indexOf('='))}`;
      throw new TypeError(`spawn request string contains NUL: ${what}`);
    }
    length += Buffer.byteLength(s) + 1;
  }
  if (files.length > 0) length += 2;
  for (const file of files) {
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(file.name) || file.name.length > 255)
      throw new TypeError(`spawn file name is not a plain file name: ${JSON.stringify(file.name)}`);
    length += file.name.length + 1 + 4 + file.data.length;
  }
  if (length > MAX_FRAME) throw new RangeError(`a SPAWN frame of ${length} bytes exceeds ${MAX_FRAME}`);
  // One buffer, written in place: the frame's header, the fixed fields, then each string and its NUL.
  // Its own memory, never a slice of Node's shared pool: it may carry secrets, and the sender zeroes
  // it once it is written (AgentConnection.send's `wipe`), which must leave no copy behind.
  const frame = Buffer.allocUnsafeSlow(HEADER_SIZE + length);
  frame[0] = FRAME.SPAWN;
  frame.writeUInt32BE(length, 1);
  frame[HEADER_SIZE] = (request.tty ? SPAWN_TTY : 0) | (files.length > 0 ? SPAWN_FILES : 0);
  frame.writeUInt16BE(request.tty?.cols ?? 0, HEADER_SIZE + 1);
  frame.writeUInt16BE(request.tty?.rows ?? 0, HEADER_SIZE + 3);
  frame.writeUInt16BE(request.argv.length, HEADER_SIZE + 5);
  frame.writeUInt16BE(strings.length - 1 - request.argv.length, HEADER_SIZE + 7);
  let offset = HEADER_SIZE + SPAWN_HEAD;
  for (const s of strings) {
    offset += frame.write(s, offset);
    frame[offset++] = 0;
  }
  if (files.length > 0) offset = frame.writeUInt16BE(files.length, offset);
  for (const file of files) {
    offset += frame.write(file.name, offset, 'latin1');
    frame[offset++] = 0;
    offset = frame.writeUInt32BE(file.data.length, offset);
    frame.set(file.data, offset);
    offset += file.data.length;
  }
  return frame;
}

/** The fixed fields of a SPAWN payload: flags, cols, rows, argc, envc. */
const SPAWN_HEAD = 9;

/** Encodes a RESIZE frame. */
export function encodeResize(cols: number, rows: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt16BE(cols, 0);
  payload.writeUInt16BE(rows, 2);
  return encodeFrame(FRAME.RESIZE, payload);
}

/** Encodes an OPEN frame: relay connection `id` to port `port` on the container's loopback. */
export function encodeOpen(id: number, port: number): Buffer {
  const payload = Buffer.alloc(6);
  payload.writeUInt32BE(id, 0);
  payload.writeUInt16BE(port, 4);
  return encodeFrame(FRAME.OPEN, payload);
}

/** One decoded frame. The payload is a view into the decoder's buffer: copy it to keep it. */
export interface Frame {
  type: number;
  payload: Buffer;
}

/** Splits a byte stream into frames. Throws on a frame larger than {@link MAX_FRAME}. */
export class FrameDecoder {
  #pending: Buffer = Buffer.alloc(0);

  /** Feeds bytes and returns every frame they complete. */
  push(chunk: Buffer): Frame[] {
    let data = this.#pending.length ? Buffer.concat([this.#pending, chunk]) : chunk;
    const frames: Frame[] = [];
    while (data.length >= HEADER_SIZE) {
      const length = data.readUInt32BE(1);
      if (length > MAX_FRAME) throw new RangeError(`agent frame of ${length} bytes exceeds ${MAX_FRAME}`);
      if (data.length < HEADER_SIZE + length) break;
      frames.push({ type: data[0]!, payload: data.subarray(HEADER_SIZE, HEADER_SIZE + length) });
      data = data.subarray(HEADER_SIZE + length);
    }
    this.#pending = data.length ? Buffer.from(data) : Buffer.alloc(0);
    return frames;
  }
}
