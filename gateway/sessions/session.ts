/**
 * @module
 * One live session: a WebSocket joined to a running invocation's stdio, with backpressure both ways,
 * a heartbeat, an idle timeout, and an end that always says why (a status frame on channel 3, then a
 * close).
 */
import { finished } from 'node:stream/promises';
import type { WebSocket } from 'ws';
import type { Invocation, InvocationResult } from '../../runtime/invocation/invocation.ts';
import { CHANNEL, decodeClientFrame, encodeFrame, ProtocolViolation } from './protocol.ts';

/** Options of {@link runSession}. */
export interface SessionOptions {
  ws: WebSocket;
  invocation: Invocation;
  /** The command runs on a pseudo-terminal: an empty stdin frame sends the terminal's EOF (Ctrl-D). */
  tty: boolean;
  /** The session ends after this long with no traffic either way. */
  idleTimeoutMs: number;
  /** The manifest's sessionTimeoutMs, for the message when the invocation's clock runs out. */
  sessionTimeoutMs: number;
  /** Told the status as soon as the command has ended, before it is sent (metrics count it). */
  onStatus?: ((status: SessionStatus) => void) | undefined;
  /** Bytes the socket may hold unsent before the command's output is paused. @default 1 MiB */
  highWaterMark?: number;
  /** A ping this often; a client that has not answered by the next one is gone. @default 15000 */
  heartbeatMs?: number;
}

/** The status a session ends with (channel 3). */
export type SessionStatus = { exitCode: number } | { signal: string } | { error: { code: string; message: string } };

/** A running session, as the gateway's session set sees it. */
export interface Session {
  /** Resolves with the status once the session has ended and its socket is closing. */
  ended: Promise<SessionStatus>;
  /** Ends the session because the gateway is shutting down (status SHUTTING_DOWN, close 1001). */
  shutdown(): void;
}

const DEFAULT_HIGH_WATER_MARK = 1024 * 1024;
/** Stdin bytes queued for a command that does not read them, before fnix stops reading the socket. */
const STDIN_QUEUE_LIMIT = 1024 * 1024;
/** Stdin writes waiting, at most, before fnix stops reading the socket. */
const STDIN_QUEUE_WRITES = 64;
/** After the server's close frame, how long a client has to answer before its socket is dropped. */
const CLOSE_GRACE_MS = 2000;
const DEFAULT_HEARTBEAT_MS = 15_000;
/**
 * While fnix is not reading the socket (stdin is full), it cannot see a close or a pong either; a ping
 * this often finds a client that has gone, because writing to its socket fails.
 */
const BLOCKED_PROBE_MS = 250;
const CTRL_D = Buffer.of(0x04);

/** Joins `ws` to `invocation` until one of them ends. */
export function runSession(options: SessionOptions): Session {
  const { ws, invocation, idleTimeoutMs, sessionTimeoutMs } = options;
  const highWaterMark = options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK;
  let commandEnded = false;

  // Why the session ends, when the gateway decides it rather than the command. Once decided, output
  // that has not reached the socket is dropped: the client may be gone, or too slow to wait for.
  let verdict: { status: SessionStatus; closeCode: number } | undefined;
  let abandonOutput!: () => void;
  const outputAbandoned = new Promise<void>((resolve) => (abandonOutput = resolve));
  const end = (status: SessionStatus, closeCode: number) => {
    verdict ??= { status, closeCode };
    invocation.kill('aborted');
    setOutputPaused(false);
    abandonOutput();
  };

  // The idle clock: traffic only stamps the time; one timer looks at the stamp when it fires.
  let lastTraffic = performance.now();
  const touch = () => (lastTraffic = performance.now());
  let idleTimer: NodeJS.Timeout | undefined;
  const checkIdle = () => {
    const quietMs = performance.now() - lastTraffic;
    if (quietMs < idleTimeoutMs) idleTimer = setTimeout(checkIdle, idleTimeoutMs - quietMs);
    else end({ error: { code: 'SESSION_IDLE', message: `no traffic either way for idleTimeoutMs (${idleTimeoutMs} ms)` } }, 1000);
  };
  idleTimer = setTimeout(checkIdle, idleTimeoutMs);

  // The heartbeat finds clients that vanished without a close (a dropped network, a sleeping laptop).
  let awaitingPong = false;
  ws.on('pong', () => (awaitingPong = false));
  const heartbeat = setInterval(() => {
    if (stdinBlocked) return; // pongs cannot be read now; the probe below covers it
    if (awaitingPong) return void ws.terminate();
    awaitingPong = true;
    ws.ping();
  }, options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS);

  // Output: a slow client makes the command wait (the streams pause, so the agent stops reading the
  // command's pipes), rather than the gateway buffering without bound.
  let outputPaused = false;
  function setOutputPaused(paused: boolean): void {
    if (paused === outputPaused) return;
    outputPaused = paused;
    for (const stream of [invocation.stdout, invocation.stderr]) paused ? stream.pause() : stream.resume();
  }
  const forward = (channel: number) => (chunk: Buffer) => {
    touch();
    if (verdict || ws.readyState !== ws.OPEN) return;
    ws.send(encodeFrame(channel, chunk), { binary: true }, () => {
      if (outputPaused && ws.bufferedAmount < highWaterMark / 2) setOutputPaused(false);
    });
    if (ws.bufferedAmount >= highWaterMark) setOutputPaused(true);
  };
  invocation.stdout.on('data', forward(CHANNEL.STDOUT));
  invocation.stderr.on('data', forward(CHANNEL.STDERR));

  // Stdin: frames are written as they come (resize and signal frames act at once) until more than
  // STDIN_QUEUE_LIMIT waits for a command that is not reading; then fnix stops reading the socket.
  let stdinBlocked = false;
  let probe: NodeJS.Timeout | undefined;
  const unblockStdin = () => {
    if (!stdinBlocked) return;
    stdinBlocked = false;
    clearInterval(probe);
    ws.resume();
  };
  const blockStdin = () => {
    if (stdinBlocked) return;
    stdinBlocked = true;
    ws.pause();
    invocation.stdin.once('drain', unblockStdin);
    probe = setInterval(() => ws.ping(), BLOCKED_PROBE_MS);
  };
  // 'drain' never comes once stdin is ending or the command is gone.
  invocation.stdin.once('finish', unblockStdin);
  void invocation.done.then(unblockStdin);

  ws.on('message', (data: Buffer, isBinary: boolean) => {
    touch();
    if (commandEnded) return; // too late to matter: the status is on its way
    let frame: ReturnType<typeof decodeClientFrame>;
    try {
      frame = decodeClientFrame(data, isBinary);
    } catch (error) {
      if (!(error instanceof ProtocolViolation)) throw error;
      end({ error: { code: 'SESSION_PROTOCOL_ERROR', message: error.message } }, error.closeCode);
      return;
    }
    if (frame.channel === 'resize') invocation.resize(frame.cols, frame.rows);
    else if (frame.channel === 'signal') invocation.sendSignal(frame.signal);
    else if (frame.data.length === 0) {
      flushStdin();
      // A pty has no end of input of its own: a terminal user types Ctrl-D, which the line discipline
      // turns into end-of-file for a reader at the start of a line.
      if (options.tty) invocation.stdin.write(CTRL_D);
      else invocation.stdin.end();
    } else if (!invocation.stdin.writableEnded) {
      queueStdin(frame.data);
    }
  });
  // The frames that arrive together (one read of the socket can hold thousands) go to stdin as one
  // write: queued one by one, a flood of one-byte frames to a command that does not read would cost
  // about 100 bytes of memory per byte.
  let pendingStdin: Buffer[] = [];
  let stdinWrites = 0;
  let flushScheduled = false;
  function queueStdin(data: Buffer): void {
    pendingStdin.push(data);
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flushStdin);
    }
  }
  function flushStdin(): void {
    flushScheduled = false;
    if (pendingStdin.length === 0) return;
    const chunk = pendingStdin.length === 1 ? pendingStdin[0]! : Buffer.concat(pendingStdin);
    pendingStdin = [];
    if (invocation.stdin.writableEnded) return;
    stdinWrites += 1;
    invocation.stdin.write(chunk, () => {
      stdinWrites -= 1;
      if (stdinWrites === 0) unblockStdin();
    });
    // Bounded in bytes, and in writes: each waiting write costs memory of its own, whatever its size.
    if (invocation.stdin.writableLength > STDIN_QUEUE_LIMIT || stdinWrites > STDIN_QUEUE_WRITES) blockStdin();
  }
  // The client went away: nothing is left to read the output, so the command goes, within the agent's
  // kill deadline.
  ws.on('close', () => end({ error: { code: 'INVOCATION_ABORTED', message: 'the client closed the session' } }, 1000));
  // ws closes the socket itself after an error: a frame over maxPayload (1009), a malformed frame
  // (1002). The command goes now rather than when the client gets round to answering the close.
  ws.on('error', (error: Error & { code?: string }) => {
    const broken = error.code?.startsWith('WS_ERR_') ?? false;
    end({ error: { code: broken ? 'SESSION_PROTOCOL_ERROR' : 'INVOCATION_ABORTED', message: error.message } }, 1002);
  });

  const ended = (async (): Promise<SessionStatus> => {
    const result = await invocation.done;
    commandEnded = true;
    const status = verdict?.status ?? statusOf(result, sessionTimeoutMs);
    options.onStatus?.(status);
    // Every byte the command wrote, and then the status, reach the client before the close, unless the
    // gateway gives up on it meanwhile (the idle timeout, shutdown, a disconnect). (finished() also
    // settles for a stream that ended before it was called.)
    await Promise.race([Promise.allSettled([finished(invocation.stdout), finished(invocation.stderr)]), outputAbandoned]);
    if (ws.readyState === ws.OPEN) {
      await new Promise<void>((resolve) => {
        ws.send(encodeFrame(CHANNEL.STATUS, JSON.stringify(status)), { binary: true }, () => resolve());
        void outputAbandoned.then(resolve);
      });
    }
    clearTimeout(idleTimer);
    clearInterval(heartbeat);
    clearInterval(probe);
    if (ws.readyState === ws.OPEN) ws.close(verdict?.closeCode ?? closeCodeOf(result));
    // A client that never answers the close does not hold its socket for long.
    if (ws.readyState !== ws.CLOSED) {
      const drop = setTimeout(() => ws.terminate(), CLOSE_GRACE_MS);
      ws.once('close', () => clearTimeout(drop));
    }
    return status;
  })();
  return {
    ended,
    shutdown() {
      end({ error: { code: 'SHUTTING_DOWN', message: 'fnix is shutting down' } }, 1001);
    },
  };
}

/** The status of an invocation that ended by itself or by its own limits. */
function statusOf(result: InvocationResult, sessionTimeoutMs: number): SessionStatus {
  if (result.reason === 'exit' && result.error?.code !== 'FUNCTION_OOM') {
    return result.signal !== undefined ? { signal: result.signal } : { exitCode: result.exitCode ?? 0 };
  }
  if (result.reason === 'timeout') {
    return { error: { code: 'SESSION_TIMEOUT', message: `the session reached its sessionTimeoutMs (${sessionTimeoutMs} ms)` } };
  }
  const error = result.error!;
  return { error: { code: error.code, message: error.message } };
}

/** 1001 (going away) at shutdown, 1011 (internal error) when the container was lost, else 1000. */
function closeCodeOf(result: InvocationResult): number {
  if (result.reason === 'shutdown') return 1001;
  if (result.reason === 'lost') return 1011;
  return 1000;
}
