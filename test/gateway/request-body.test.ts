/**
 * @module
 * gateway/routes/request-body.ts on a stand-in for Node's request (a PassThrough with headers) and a
 * stand-in invocation whose stdin collects what it is given: how a body ends, and what reaches stdin.
 */
import type { IncomingMessage } from 'node:http';
import { PassThrough, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Invocation } from '../../runtime/invocation/invocation.ts';
import { deliverBody } from '../../gateway/routes/request-body.ts';

function request(headers: Record<string, string>): PassThrough & IncomingMessage {
  return Object.assign(new PassThrough(), { headers }) as unknown as PassThrough & IncomingMessage;
}

function invocation(): { invocation: Invocation; received: () => Buffer; ended: () => boolean } {
  const chunks: Buffer[] = [];
  let ended = false;
  const stdin = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk);
      callback();
    },
    final(callback) {
      ended = true;
      callback();
    },
  });
  return { invocation: { stdin, finished: false } as unknown as Invocation, received: () => Buffer.concat(chunks), ended: () => ended };
}

describe('deliverBody', () => {
  it('delivers a body of known length to stdin and ends it', async () => {
    const body = Buffer.from('{"a":1}');
    const incoming = request({ 'content-length': String(body.length) });
    const target = invocation();
    const outcome = deliverBody(incoming, target.invocation, 1024);
    incoming.end(body);
    expect(await outcome).toBe('complete');
    await new Promise((resolve) => setImmediate(resolve));
    expect(target.received().equals(body)).toBe(true);
    expect(target.ended()).toBe(true);
  });

  it('tells `received` the body bytes once the body has ended, and the bytes up to the limit when it is passed', async () => {
    const counted: number[] = [];
    const incoming = request({ 'transfer-encoding': 'chunked' });
    const outcome = deliverBody(incoming, invocation().invocation, 1 << 20, (bytes) => counted.push(bytes));
    incoming.write(Buffer.alloc(3000));
    incoming.end(Buffer.alloc(17));
    expect(await outcome).toBe('complete');
    expect(counted).toEqual([3017]);
    const over = request({ 'transfer-encoding': 'chunked' });
    const tooLarge = deliverBody(over, invocation().invocation, 10, (bytes) => counted.push(bytes));
    over.write(Buffer.alloc(11));
    expect(await tooLarge).toBe('too_large');
    expect(counted).toEqual([3017, 11]);
  });

  it('gathers many small chunks of a chunked body, in order', async () => {
    const incoming = request({ 'transfer-encoding': 'chunked' });
    const target = invocation();
    const outcome = deliverBody(incoming, target.invocation, 1 << 20);
    const expected: number[] = [];
    for (let i = 0; i < 5000; i += 1) {
      expected.push(i % 251);
      incoming.write(Buffer.of(i % 251));
    }
    incoming.end();
    expect(await outcome).toBe('complete');
    await new Promise((resolve) => setImmediate(resolve));
    expect(target.received().equals(Buffer.from(expected))).toBe(true);
  });

  it('says too_large past the limit, and leaves stdin open for the caller to kill', async () => {
    const incoming = request({ 'transfer-encoding': 'chunked' });
    const target = invocation();
    const outcome = deliverBody(incoming, target.invocation, 10);
    incoming.write(Buffer.alloc(11));
    expect(await outcome).toBe('too_large');
    expect(target.ended()).toBe(false);
  });

  it('says aborted when the client goes mid-body', async () => {
    const incoming = request({ 'content-length': '100' });
    const target = invocation();
    const outcome = deliverBody(incoming, target.invocation, 1024);
    incoming.write(Buffer.alloc(10));
    incoming.destroy();
    expect(await outcome).toBe('aborted');
  });

  it('says aborted for a client gone before the body was listened to (a cold start, say), where no event will come', async () => {
    const incoming = request({ 'content-length': '100' });
    incoming.destroy();
    await new Promise((resolve) => setImmediate(resolve)); // its 'close' has been emitted
    const target = invocation();
    expect(await deliverBody(incoming, target.invocation, 1024)).toBe('aborted');
  });

  it('ends stdin at once for a request with no body', async () => {
    const target = invocation();
    expect(await deliverBody(request({}), target.invocation, 1024)).toBe('complete');
    await new Promise((resolve) => setImmediate(resolve));
    expect(target.ended()).toBe(true);
  });
});
