/**
 * @module
 * A command's output to its session's client, at the client's pace. A slow client makes the command
 * wait, rather than the gateway buffer without bound: while `highWaterMark` bytes or more wait unsent in
 * the socket, the command's streams are paused (so the agent stops reading the command's pipes, and the
 * command blocks on its next write), and they flow again once the socket is down to half of that.
 */
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { encodeFrame } from './protocol.ts';

/** Bytes the socket may hold unsent before the output is paused, unless the session sets it. */
export const DEFAULT_HIGH_WATER_MARK = 1024 * 1024;

/** What the output uses of a WebSocket (ws's WebSocket has it). */
export interface OutputSocket {
  readonly readyState: number;
  readonly OPEN: number;
  /** Bytes queued and not yet written to the network. */
  readonly bufferedAmount: number;
  send(data: Buffer, options: { binary: boolean }, callback: (error?: Error) => void): void;
}

/** Options of {@link forwardOutput}. */
export interface OutputOptions {
  ws: OutputSocket;
  /** The command's output streams, each with the channel it goes out on. */
  outputs: ReadonlyArray<{ stream: Readable; channel: number }>;
  /** Bytes the socket may hold unsent before the streams are paused. @default 1 MiB */
  highWaterMark?: number | undefined;
  /** Told of every chunk the command writes (the idle clock counts output as traffic). */
  onChunk?: (() => void) | undefined;
}

/** The output of a session, flowing. */
export interface Output {
  /** Resolves once every chunk of the output has been handed to the socket (the streams ended), or the output was abandoned. */
  finished(): Promise<void>;
  /** Resolves when the output is abandoned. */
  readonly abandoned: Promise<void>;
  /**
   * Gives up on the client (it may be gone, or too slow to wait for): output that has not reached the
   * socket is dropped from now on, and the streams flow again, so that nothing holds the command.
   */
  abandon(): void;
}

/** Sends each chunk of `outputs` to `ws` on its channel, pausing the streams while the socket is full. */
export function forwardOutput(options: OutputOptions): Output {
  const { ws, outputs, onChunk } = options;
  const highWaterMark = options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK;
  let paused = false;
  let isAbandoned = false;
  let resolveAbandoned!: () => void;
  const abandoned = new Promise<void>((resolve) => {
    resolveAbandoned = resolve;
  });
  const setPaused = (nowPaused: boolean) => {
    if (nowPaused === paused) return;
    paused = nowPaused;
    for (const { stream } of outputs) nowPaused ? stream.pause() : stream.resume();
  };
  const forward = (channel: number) => (chunk: Buffer) => {
    onChunk?.();
    if (isAbandoned || ws.readyState !== ws.OPEN) return;
    ws.send(encodeFrame(channel, chunk), { binary: true }, () => {
      if (paused && ws.bufferedAmount < highWaterMark / 2) setPaused(false);
    });
    if (ws.bufferedAmount >= highWaterMark) setPaused(true);
  };
  for (const { stream, channel } of outputs) stream.on('data', forward(channel));
  return {
    abandoned,
    // finished() also settles for a stream that ended before it was called.
    finished: () => Promise.race([Promise.allSettled(outputs.map(({ stream }) => finished(stream))), abandoned]).then(() => {}),
    abandon() {
      isAbandoned = true;
      setPaused(false);
      resolveAbandoned();
    },
  };
}
