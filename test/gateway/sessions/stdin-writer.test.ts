/**
 * @module
 * A session's stdin writer (gateway/sessions/stdin-writer.ts), into a real Writable whose writes the test
 * completes: frames of one turn written as one, blocked past 1 MiB or 64 writes waiting and unblocked
 * when they are done, end of input with and without a terminal, and nothing held once the command ends.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createStdinWriter, STDIN_QUEUE_LIMIT, STDIN_QUEUE_WRITES } from '../../../gateway/sessions/stdin-writer.ts';

const turn = () => new Promise((resolve) => setImmediate(resolve));

/** A command's stdin that reads nothing until `read()`: every write waits until then. */
function stalledStdin() {
  const chunks: Buffer[] = [];
  const waiting: Array<() => void> = [];
  const stdin = new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk);
      waiting.push(() => callback());
    },
  });
  /** The command reads everything written so far, and what those writes let through. */
  const read = async () => {
    while (waiting.length > 0) waiting.shift()!();
    await turn();
  };
  return { stdin, chunks, read };
}

function setup({ tty = false, commandDone = new Promise<void>(() => {}) } = {}) {
  const { stdin, chunks, read } = stalledStdin();
  const blocked: boolean[] = [];
  const writer = createStdinWriter({ stdin, tty, commandDone, onBlocked: (b) => blocked.push(b) });
  return { stdin, chunks, read, blocked, writer };
}

describe('createStdinWriter', () => {
  it('writes the frames of one turn as one chunk', async () => {
    const { chunks, read, writer } = setup();
    for (const byte of 'hello') writer.write(Buffer.from(byte));
    expect(chunks).toEqual([]);
    await turn();
    writer.write(Buffer.from('!'));
    await turn();
    await read();
    expect(chunks.map(String)).toEqual(['hello', '!']);
  });

  it('blocks once more than 1 MiB waits, and unblocks when the command has read it', async () => {
    const { read, blocked, writer } = setup();
    writer.write(Buffer.alloc(STDIN_QUEUE_LIMIT)); // at the limit, not past it
    await turn();
    expect(blocked).toEqual([]);
    writer.write(Buffer.alloc(1));
    await turn();
    expect(blocked).toEqual([true]);
    await read();
    expect(blocked).toEqual([true, false]);
  });

  it('blocks once more than 64 writes wait, however small, and unblocks when they are done', async () => {
    const { read, blocked, writer } = setup();
    for (let i = 0; i < STDIN_QUEUE_WRITES; i++) {
      writer.write(Buffer.from('x'));
      await turn();
    }
    expect(blocked).toEqual([]);
    writer.write(Buffer.from('x'));
    await turn();
    expect(blocked).toEqual([true]);
    writer.write(Buffer.from('y')); // frames already read from the socket still come: written, and no second block
    await turn();
    expect(blocked).toEqual([true]);
    await read();
    expect(blocked).toEqual([true, false]);
  });

  it('leaves no drain listener behind when the last write, not a drain, unblocks it', async () => {
    const { stdin, read, blocked, writer } = setup();
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i <= STDIN_QUEUE_WRITES; i++) {
        writer.write(Buffer.from('x'));
        await turn();
      }
      await read();
    }
    expect(blocked.filter((b) => b)).toHaveLength(20);
    expect(stdin.listenerCount('drain')).toBe(0);
  });

  it('unblocks when the command ends, though stdin never drains', async () => {
    let done!: () => void;
    const { blocked, writer } = setup({ commandDone: new Promise<void>((resolve) => (done = resolve)) });
    writer.write(Buffer.alloc(STDIN_QUEUE_LIMIT + 1));
    await turn();
    expect(blocked).toEqual([true]);
    done();
    await turn();
    expect(blocked).toEqual([true, false]);
  });

  it('ends stdin at end of input, after what was queued', async () => {
    const { stdin, chunks, read, writer } = setup();
    writer.write(Buffer.from('last'));
    writer.end();
    await read();
    expect(chunks.map(String)).toEqual(['last']);
    expect(stdin.writableFinished).toBe(true);
    writer.write(Buffer.from('after the end')); // dropped, without a write-after-end error
    await turn();
    expect(chunks.map(String)).toEqual(['last']);
  });

  it('types Ctrl-D at end of input on a terminal, and keeps stdin open', async () => {
    const { stdin, chunks, read, writer } = setup({ tty: true });
    writer.write(Buffer.from('ls\n'));
    writer.end();
    await read();
    expect(chunks).toEqual([Buffer.from('ls\n'), Buffer.of(0x04)]);
    expect(stdin.writableEnded).toBe(false);
  });
});
