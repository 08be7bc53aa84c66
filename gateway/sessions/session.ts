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
  /** The session ends after this long with no traffic either way. */
  idleTimeoutMs: number;
  /** The manifest's sessionTimeoutMs, for the message when the invocation's clock runs out. */
  sessionTimeoutMs: number;
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

/** Joins `ws` to `invocation` until one of them ends. */
export function runSession(options: SessionOptions): Session {
  const { ws, invocation, idleTimeoutMs, sessionTimeoutMs } = options;
  const highWaterMark = options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK;
  // Why the session ends, when the gateway decides it rather than the command.
  let verdict: { status: SessionStatus; closeCode: number } | undefined;
  let outputPaused = false;
  let idleTimer: NodeJS.Timeout | undefined;

  const touch = () => {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      end({ error: { code: 'SESSION_IDLE', message: `no traffic either way for idleTimeoutMs (${idleTimeoutMs} ms)` } }, 1000);
    }, idleTimeoutMs);
  };
  /** The gateway ends the session: the command is killed, and the status says why. */
  const end = (status: SessionStatus, closeCode: number) => {
    verdict ??= { status, closeCode };
    invocation.kill('aborted');
  };

  const forward = (channel: number) => (chunk: Buffer) => {
    touch();
    if (ws.readyState !== ws.OPEN) return;
    ws.send(encodeFrame(channel, chunk), { binary: true }, () => {
      if (outputPaused && ws.bufferedAmount < highWaterMark / 2) {
        outputPaused = false;
        invocation.stdout.resume();
        invocation.stderr.resume();
      }
    });
    if (!outputPaused && ws.bufferedAmount >= highWaterMark) {
      // A slow client: the command's output waits (the agent stops reading its pipes) rather than the
      // gateway buffering without bound.
      outputPaused = true;
      invocation.stdout.pause();
      invocation.stderr.pause();
    }
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
    if (frame.channel === 'stdin') {
      if (frame.data.length === 0) invocation.stdin.end();
      else if (!invocation.stdin.writableEnded && !invocation.stdin.write(frame.data)) {
        // The command reads slower than the client sends: stop reading the socket until it catches up.
        // ('drain' never comes once stdin is ending, so the end of the invocation resumes too.)
        ws.pause();
        const resume = () => {
          invocation.stdin.off('drain', resume);
          ws.resume();
        };
        invocation.stdin.on('drain', resume);
        invocation.stdin.once('finish', resume);
        void invocation.done.then(resume);
      }
    } else if (frame.channel === 'resize') {
      invocation.resize(frame.cols, frame.rows);
    } else {
      invocation.sendSignal(frame.signal);
    }
  });
  // The client went away (or the frame was too large, which ws closes with 1009): nothing is left to
  // read the output, so the command goes within the agent's kill deadline.
  ws.on('close', () => invocation.kill('aborted'));
  ws.on('error', () => {}); // a close always follows

  touch();
  const ended = (async (): Promise<SessionStatus> => {
    const result = await invocation.done;
    clearTimeout(idleTimer);
    // Everything the command wrote goes out before the status.
    // (finished() also settles for a stream that ended before it was called; errors cannot occur here.)
    if (ws.readyState === ws.OPEN) await Promise.allSettled([finished(invocation.stdout), finished(invocation.stderr)]);
    const status = verdict?.status ?? statusOf(result, sessionTimeoutMs);
    if (ws.readyState === ws.OPEN) {
      ws.send(encodeFrame(CHANNEL.STATUS, JSON.stringify(status)), { binary: true });
      ws.close(verdict?.closeCode ?? (result.reason === 'shutdown' ? 1001 : 1000));
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
  if (result.reason === 'exit') {
    return result.signal !== undefined ? { signal: result.signal } : { exitCode: result.exitCode ?? 0 };
  }
  if (result.reason === 'timeout') {
    return { error: { code: 'SESSION_TIMEOUT', message: `the session reached its sessionTimeoutMs (${sessionTimeoutMs} ms)` } };
  }
  const error = result.error!;
  return { error: { code: error.code, message: error.message } };
}
