/**
 * @module
 * TailBuffer (runtime/stdio/tail.ts): keeps exactly the last N bytes however they were pushed, copies
 * what it keeps, and decodes the kept bytes as UTF-8.
 */
import { describe, expect, it } from 'vitest';
import { TailBuffer } from '../../../runtime/stdio/tail.ts';

/** A deterministic pseudo-random generator, so failures reproduce. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('TailBuffer', () => {
  it('keeps everything while under the limit', () => {
    const tail = new TailBuffer(10);
    tail.push(Buffer.from('abc'));
    tail.push(Buffer.from('def'));
    expect(tail.toString()).toBe('abcdef');
  });

  it('is empty before any push and after empty pushes', () => {
    const tail = new TailBuffer(4);
    expect(tail.toString()).toBe('');
    tail.push(Buffer.alloc(0));
    tail.push(Buffer.alloc(0));
    expect(tail.toString()).toBe('');
  });

  it('keeps exactly the limit when pushes add up to it', () => {
    const tail = new TailBuffer(6);
    tail.push(Buffer.from('abc'));
    tail.push(Buffer.from('def'));
    expect(tail.toString()).toBe('abcdef');
    tail.push(Buffer.from('g'));
    expect(tail.toString()).toBe('bcdefg');
  });

  it('keeps the last N bytes across many small pushes', () => {
    const tail = new TailBuffer(5);
    let all = '';
    for (let i = 0; i < 200; i++) {
      const piece = String.fromCharCode(97 + (i % 26));
      tail.push(Buffer.from(piece));
      all += piece;
      expect(tail.toString()).toBe(all.slice(-5));
    }
  });

  it('keeps the last N bytes for random chunk sizes, checked after every push', () => {
    const random = prng(42);
    for (const limit of [1, 7, 64, 1000]) {
      const tail = new TailBuffer(limit);
      let all = Buffer.alloc(0);
      for (let i = 0; i < 300; i++) {
        const size = Math.floor(random() * limit * 1.5);
        const chunk = Buffer.from(Array.from({ length: size }, () => 0x21 + Math.floor(random() * 90)));
        tail.push(chunk);
        all = Buffer.concat([all, chunk]);
        expect(tail.toString()).toBe(all.subarray(Math.max(0, all.length - limit)).toString());
      }
    }
  });

  it('keeps the last N bytes of a single push larger than the limit', () => {
    const tail = new TailBuffer(8);
    tail.push(Buffer.from('0123456789abcdefghij'));
    expect(tail.toString()).toBe('cdefghij');
  });

  it('keeps the last N bytes of a huge push that follows earlier pushes', () => {
    const tail = new TailBuffer(1024);
    tail.push(Buffer.from('old'));
    const huge = Buffer.alloc(10 * 1024 * 1024, 'a');
    huge.write('END', huge.length - 3);
    tail.push(huge);
    const kept = tail.toString();
    expect(kept).toHaveLength(1024);
    expect(kept.endsWith('aEND')).toBe(true);
    expect(kept).not.toContain('old');
  });

  it('keeps working after a huge push', () => {
    const tail = new TailBuffer(4);
    tail.push(Buffer.from('xxxxxxxxxx'));
    tail.push(Buffer.from('ab'));
    expect(tail.toString()).toBe('xxab');
  });

  it('copies what it keeps: later changes to a pushed buffer do not show', () => {
    const tail = new TailBuffer(4);
    const small = Buffer.from('ab');
    const big = Buffer.from('123456');
    tail.push(big);
    big.fill('z');
    expect(tail.toString()).toBe('3456');
    tail.push(small);
    small.fill('z');
    expect(tail.toString()).toBe('56ab');
  });

  it('shows a multi-byte character cut at the start as U+FFFD', () => {
    const tail = new TailBuffer(3);
    tail.push(Buffer.from('x€y')); // x, the 3 bytes of €, y: the last 3 bytes hold only 2 of €
    const kept = tail.toString();
    expect(kept.endsWith('y')).toBe(true);
    expect(kept).not.toContain('€');
    expect(kept.slice(0, -1)).toMatch(/^\ufffd+$/);
  });

  it('keeps a multi-byte character whole when the tail starts on it', () => {
    const tail = new TailBuffer(4);
    tail.push(Buffer.from('x'));
    tail.push(Buffer.from('€y'));
    expect(tail.toString()).toBe('€y');
  });

  it('keeps nothing with a limit of 0', () => {
    const tail = new TailBuffer(0);
    tail.push(Buffer.from('abc'));
    expect(tail.toString()).toBe('');
    expect(tail.limit).toBe(0);
  });
});
