/**
 * @module
 * One live session: a WebSocket joined to a running invocation's stdio until one of them ends, with an
 * end that always says why (a status frame on channel 3, then a close). It composes the parts: the idle
 * clock (idle-clock.ts), the heartbeat (heartbeat.ts), the output at the client's pace
 * (output-backpressure.ts) and the bounded stdin (stdin-writer.ts); the status is session-status.ts's.
 */
import type { WebSocket } from 'ws';
import { FnixError } from '../../runtime/errors.ts';
import type { Invocation } from '../../runtime/invocation/invocation.ts';
import { startHeartbeat } from './heartbeat.ts';
import { startIdleClock } from './idle-clock.ts';
import { forwardOutput } from './output-backpressure.ts';
import { CHANNEL, decodeClientFrame, encodeFrame, ProtocolViolation } from './protocol.ts';
import { closeCodeOf, errorStatus, type SessionStatus, statusOf } from './session-status.ts';
import { createStdinWriter } from './stdin-writer.ts';

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
  heartbeatMs?: number | undefined;
}

/** A running session, as the gateway's session set sees it. */
export interface Session {
  /** Resolves with the status once the session has ended and its socket is closing. */
  ended: Promise<SessionStatus>;
  /** Ends the session because the gateway is shutting down (status SHUTTING_DOWN, close 1001). */
  shutdown(): void;
  /** Ends the session for `error` (its status) with close code `closeCode`, e.g. KEY_INVALID and 1008 for a revoked key. */
  stop(error: FnixError, closeCode: number): void;
}

/** After the server's close frame, how long a client has to answer before its socket is dropped. */
const CLOSE_GRACE_MS = 2000;

/** Joins `ws` to `invocation` until one of them ends. */
export function runSession(options: SessionOptions): Session {
  const { ws, invocation, idleTimeoutMs, sessionTimeoutMs } = options;
  let commandEnded = false;

  // Why the session ends, when the gateway decides it rather than the command. Once decided, output
  // that has not reached the socket is dropped: the client may be gone, or too slow to wait for.
  let verdict: { status: SessionStatus; closeCode: number } | undefined;
  const end = (error: FnixError, closeCode: number) => {
    verdict ??= { status: errorStatus(error), closeCode };
    invocation.kill('aborted');
    output.abandon();
  };

  const idle = startIdleClock({
    timeoutMs: idleTimeoutMs,
    onIdle: () => end(new FnixError('SESSION_IDLE', `no traffic either way for idleTimeoutMs (${idleTimeoutMs} ms)`), 1000),
  });
  const heartbeat = startHeartbeat({ ws, intervalMs: options.heartbeatMs });
  const output = forwardOutput({
    ws,
    outputs: [
      { stream: invocation.stdout, channel: CHANNEL.STDOUT },
      { stream: invocation.stderr, channel: CHANNEL.STDERR },
    ],
    highWaterMark: options.highWaterMark,
    onChunk: idle.touch,
  });
  // While stdin is full fnix stops reading the socket, and the heartbeat probes instead of waiting for pongs.
  const stdin = createStdinWriter({
    stdin: invocation.stdin,
    tty: options.tty,
    commandDone: invocation.done,
    onBlocked: (blocked) => {
      if (blocked) {
        ws.pause();
        heartbeat.setReading(false);
      } else {
        heartbeat.setReading(true);
        ws.resume();
      }
    },
  });

  ws.on('message', (data: Buffer, isBinary: boolean) => {
    idle.touch();
    if (commandEnded) return; // too late to matter: the status is on its way
    let frame: ReturnType<typeof decodeClientFrame>;
    try {
      frame = decodeClientFrame(data, isBinary);
    } catch (error) {
      if (!(error instanceof ProtocolViolation)) throw error;
      end(new FnixError('SESSION_PROTOCOL_ERROR', error.message), error.closeCode);
      return;
    }
    if (frame.channel === 'resize') invocation.resize(frame.cols, frame.rows);
    else if (frame.channel === 'signal') invocation.sendSignal(frame.signal);
    else if (frame.data.length === 0) stdin.end();
    else stdin.write(frame.data);
  });
  // The client went away: nothing is left to read the output, so the command goes, within the agent's
  // kill deadline.
  ws.on('close', () => end(new FnixError('INVOCATION_ABORTED', 'the client closed the session'), 1000));
  // ws closes the socket itself after an error: a frame over maxPayload (1009), a malformed frame
  // (1002). The command goes now rather than when the client gets round to answering the close.
  ws.on('error', (error: Error & { code?: string }) => {
    const broken = error.code?.startsWith('WS_ERR_') ?? false;
    end(new FnixError(broken ? 'SESSION_PROTOCOL_ERROR' : 'INVOCATION_ABORTED', error.message), 1002);
  });

  const ended = (async (): Promise<SessionStatus> => {
    const result = await invocation.done;
    commandEnded = true;
    const status = verdict?.status ?? statusOf(result, sessionTimeoutMs);
    options.onStatus?.(status);
    // Every byte the command wrote, and then the status, reach the client before the close, unless the
    // gateway gives up on it meanwhile (the idle timeout, shutdown, a disconnect).
    await output.finished();
    if (ws.readyState === ws.OPEN) {
      await new Promise<void>((resolve) => {
        ws.send(encodeFrame(CHANNEL.STATUS, JSON.stringify(status)), { binary: true }, () => resolve());
        void output.abandoned.then(resolve);
      });
    }
    idle.stop();
    heartbeat.stop();
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
      end(new FnixError('SHUTTING_DOWN', 'fnix is shutting down'), 1001);
    },
    stop(error, closeCode) {
      end(error, closeCode);
    },
  };
}
