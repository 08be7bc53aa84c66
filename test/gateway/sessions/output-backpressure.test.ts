/**
 * @module
 * A command's output to its session's client (gateway/sessions/output-backpressure.ts), through real
 * streams to a fake socket whose unsent bytes the test sets: chunks on their channels, the streams
 * paused at the high-water mark and resumed below half of it, and output abandoned.
 */
import { Readable } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { DEFAULT_HIGH_WATER_MARK, forwardOutput, type OutputSocket } from '../../../gateway/sessions/output-backpressure.ts';
import { CHANNEL } from '../../../gateway/sessions/protocol.ts';

/** A socket that keeps what it was sent, with each send's callback; bufferedAmount grows by each frame. */
class FakeSocket implements OutputSocket {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  readonly frames: Buffer[] = [];
  readonly callbacks: Array<() => void> = [];
  send(data: Buffer, _options: { binary: boolean }, callback: () => void): void {
    this.frames.push(data);
    this.callbacks.push(callback);
    this.bufferedAmount += data.length;
  }
  /** The network took bytes: `bufferedAmount` is down to `left`, and the oldest pending send is done. */
  sent(left: number): void {
    this.bufferedAmount = left;
    this.callbacks.shift()!();
  }
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

function setup(highWaterMark = 100) {
  const ws = new FakeSocket();
  const stdout = new Readable({ read() {} });
  const stderr = new Readable({ read() {} });
  const onChunk = vi.fn();
  const output = forwardOutput({
    ws,
    highWaterMark,
    onChunk,
    outputs: [
      { stream: stdout, channel: CHANNEL.STDOUT },
      { stream: stderr, channel: CHANNEL.STDERR },
    ],
  });
  return { ws, stdout, stderr, onChunk, output };
}

describe('forwardOutput', () => {
  it('sends each chunk as a frame on its channel, and counts it as traffic', async () => {
    const { ws, stdout, stderr, onChunk } = setup();
    stdout.push('out');
    stderr.push('err');
    await turn();
    expect(ws.frames).toEqual([Buffer.from('\x01out'), Buffer.from('\x02err')]);
    expect(onChunk).toHaveBeenCalledTimes(2);
  });

  it('pauses both streams once the socket holds highWaterMark bytes, and resumes them below half of it', async () => {
    const { ws, stdout, stderr } = setup(100);
    stdout.push(Buffer.alloc(59)); // 60 bytes framed
    await turn();
    expect(stdout.isPaused()).toBe(false);
    stdout.push(Buffer.alloc(39)); // 100 framed: at the mark
    await turn();
    expect(stdout.isPaused()).toBe(true);
    expect(stderr.isPaused()).toBe(true);
    ws.sent(50); // half is not below half
    expect(stdout.isPaused()).toBe(true);
    ws.sent(49);
    expect(stdout.isPaused()).toBe(false);
    expect(stderr.isPaused()).toBe(false);
  });

  it('sends nothing more to the socket while paused: the streams hold the rest', async () => {
    const { ws, stdout } = setup(100);
    stdout.push(Buffer.alloc(200));
    await turn();
    stdout.push('held');
    await turn();
    expect(ws.frames).toHaveLength(1);
    ws.sent(0);
    await turn();
    expect(ws.frames).toHaveLength(2);
    expect(ws.frames[1]!.subarray(1).toString()).toBe('held');
  });

  it('is 1 MiB unless set', () => {
    expect(DEFAULT_HIGH_WATER_MARK).toBe(1024 * 1024);
  });

  it('drops output once abandoned, and lets the streams flow so that the command is not held', async () => {
    const { ws, stdout, stderr, onChunk, output } = setup(100);
    stdout.push(Buffer.alloc(200));
    await turn();
    expect(stdout.isPaused()).toBe(true);
    output.abandon();
    expect(stdout.isPaused()).toBe(false);
    expect(stderr.isPaused()).toBe(false);
    await output.abandoned;
    await output.finished(); // the streams have not ended, but no one waits for them now
    stdout.push('dropped');
    await turn();
    expect(ws.frames).toHaveLength(1);
    expect(onChunk).toHaveBeenCalledTimes(2); // still traffic, though dropped
  });

  it('drops output while the socket is not open', async () => {
    const { ws, stdout } = setup();
    ws.readyState = 2; // closing
    stdout.push('late');
    await turn();
    expect(ws.frames).toEqual([]);
  });

  it('is finished once both streams have ended', async () => {
    const { stdout, stderr, output } = setup();
    let finished = false;
    void output.finished().then(() => {
      finished = true;
    });
    stdout.push(null);
    await turn();
    expect(finished).toBe(false);
    stderr.push(null);
    await turn();
    expect(finished).toBe(true);
  });
});
