/**
 * @module
 * One live session: a WebSocket joined to a running invocation's stdio, with backpressure both ways,
 * an idle timeout, and an end that always says why (a status frame on channel 3, then a close).
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
/** After the server's close frame, how long a client has to answer before its socket is dropped. */
const CLOSE_GRACE_MS = 2000;
const CTRL_D = Buffer.of(0x04);

/** Joins `ws` to `invocation` until one of them ends. */
export function runSession(options: SessionOptions): Session {
  const { ws, invocation, idleTimeoutMs, sessionTimeoutMs } = options;
  const highWaterMark = options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK;

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

  ws.on('message', (data: Buffer, isBinary: boolean) => {
    touch();
    let frame;
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
      // A pty has no end of input of its own: a terminal user types Ctrl-D, which the line discipline
      // turns into end-of-file for a reader at the start of a line.
      if (options.tty) invocation.stdin.write(CTRL_D);
      else invocation.stdin.end();
    } else if (!invocation.stdin.writableEnded && !invocation.stdin.write(frame.data)) {
      // The command reads slower than the client sends: stop reading the socket until it catches up.
      // ('drain' never comes once stdin is ending, hence 'finish' and the end of the command too.)
      ws.pause();
      const resume = () => {
        invocation.stdin.off('drain', resume).off('finish', resume);
        ws.resume();
      };
      invocation.stdin.on('drain', resume).on('finish', resume);
      void invocation.done.then(resume);
    }
  });
  // The client went away (or sent a frame over maxPayload, which ws answers with 1009): nothing is left
  // to read the output, so the command goes, within the agent's kill deadline.
  ws.on('close', () => end({ error: { code: 'INVOCATION_ABORTED', message: 'the client closed the session' } }, 1000));
  ws.on('error', () => {}); // a close always follows

  const ended = (async (): Promise<SessionStatus> => {
    const result = await invocation.done;
    const status = verdict?.status ?? statusOf(result, sessionTimeoutMs);
    options.onStatus?.(status);
    // Everything the command wrote goes out before the status, unless the gateway has given up on it.
    // (finished() also settles for a stream that ended before it was called.)
    await Promise.race([Promise.allSettled([finished(invocation.stdout), finished(invocation.stderr)]), outputAbandoned]);
    clearTimeout(idleTimer);
    if (ws.readyState === ws.OPEN) {
      ws.send(encodeFrame(CHANNEL.STATUS, JSON.stringify(status)), { binary: true });
      ws.close(verdict?.closeCode ?? (result.reason === 'shutdown' ? 1001 : 1000));
    }
    // A client that never answers the close (or never reads) does not hold its socket for long.
    const drop = setTimeout(() => ws.terminate(), CLOSE_GRACE_MS);
    ws.once('close', () => clearTimeout(drop));
    if (ws.readyState === ws.CLOSED) clearTimeout(drop);
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
  if (result.reason === 'exit') {
    return result.signal !== undefined ? { signal: result.signal } : { exitCode: result.exitCode ?? 0 };
  }
  if (result.reason === 'timeout') {
    return { error: { code: 'SESSION_TIMEOUT', message: `the session reached its sessionTimeoutMs (${sessionTimeoutMs} ms)` } };
  }
  const error = result.error!;
  return { error: { code: error.code, message: error.message } };
}
