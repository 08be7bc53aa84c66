/**
 * @module
 * A session's heartbeat, which finds clients that vanished without a close (a dropped network, a
 * sleeping laptop): a ping every interval, and a client that has not answered one by the next is
 * dropped. While fnix is not reading the socket (stdin is full: stdin-writer.ts) it cannot see a pong,
 * nor a close; the heartbeat holds its judgement then, and a probe pings four times a second instead,
 * because writing to a client that has gone fails, and ws then closes the socket.
 */

/** The heartbeat's interval unless the session sets one. */
export const DEFAULT_HEARTBEAT_MS = 15_000;
/** How often the probe pings while fnix is not reading the socket. */
export const BLOCKED_PROBE_MS = 250;

/** What the heartbeat uses of a WebSocket (ws's WebSocket has it). */
export interface HeartbeatSocket {
  ping(): void;
  terminate(): void;
  on(event: 'pong', listener: () => void): unknown;
}

/** Options of {@link startHeartbeat}. */
export interface HeartbeatOptions {
  ws: HeartbeatSocket;
  /** A ping this often; no pong by the next one drops the client. @default 15000 */
  intervalMs?: number | undefined;
}

/** A running heartbeat. */
export interface Heartbeat {
  /** Says whether fnix reads the socket: while it does not, pongs go unseen and the probe pings. */
  setReading(reading: boolean): void;
  /** Stops the pings, the probe's too. */
  stop(): void;
}

/** Starts pinging `ws`; the first ping goes one interval from now. */
export function startHeartbeat({ ws, intervalMs = DEFAULT_HEARTBEAT_MS }: HeartbeatOptions): Heartbeat {
  let awaitingPong = false;
  let reading = true;
  let probe: NodeJS.Timeout | undefined;
  ws.on('pong', () => {
    awaitingPong = false;
  });
  const beat = setInterval(() => {
    if (!reading) return; // pongs cannot be read now; the probe covers it
    if (awaitingPong) return void ws.terminate();
    awaitingPong = true;
    ws.ping();
  }, intervalMs);
  return {
    setReading(nowReading) {
      if (nowReading === reading) return;
      reading = nowReading;
      if (reading) clearInterval(probe);
      else probe = setInterval(() => ws.ping(), BLOCKED_PROBE_MS);
    },
    stop() {
      clearInterval(beat);
      clearInterval(probe);
    },
  };
}
