/**
 * @module
 * LineSplitter (runtime/stdio/line-splitter.ts): bytes to log lines across chunk boundaries, CRLF,
 * lines cut at maxLineBytes, the per-stream maxBytes budget and the "not logged" summary on end().
 */
import { describe, expect, it } from 'vitest';
import { LineSplitter, type LineSplitterOptions } from '../../../runtime/stdio/line-splitter.ts';

/** Writes `chunks` to a splitter, calls end() unless told not to, and returns the lines. */
function split(chunks: Array<string | Buffer>, options: Omit<LineSplitterOptions, 'onLine'> = {}, end = true): string[] {
  const lines: string[] = [];
  const splitter = new LineSplitter({ onLine: (line) => lines.push(line), ...options });
  for (const chunk of chunks) splitter.write(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  if (end) splitter.end();
  return lines;
}

describe('LineSplitter: lines', () => {
  it('emits one line per newline, without the newline', () => {
    expect(split(['one\ntwo\nthree\n'])).toEqual(['one', 'two', 'three']);
  });

  it('joins a line split across chunks, at every split point', () => {
    const text = 'alpha\nbeta\ngamma\n';
    for (let cut = 0; cut <= text.length; cut++) {
      expect(split([text.slice(0, cut), text.slice(cut)])).toEqual(['alpha', 'beta', 'gamma']);
    }
  });

  it('joins a line fed one byte at a time', () => {
    expect(split([...'ab\ncd\n'])).toEqual(['ab', 'cd']);
  });

  it('emits a line only once its newline arrived (before end)', () => {
    expect(split(['abc', 'def'], {}, false)).toEqual([]);
    expect(split(['abc', 'def\ngh'], {}, false)).toEqual(['abcdef']);
  });

  it('keeps empty lines', () => {
    expect(split(['\n\na\n\n'])).toEqual(['', '', 'a', '']);
  });

  it('strips the CR of CRLF, also when CR and LF arrive in different chunks', () => {
    expect(split(['a\r\nb\r\n'])).toEqual(['a', 'b']);
    expect(split(['a\r', '\nb\r', '\n'])).toEqual(['a', 'b']);
  });

  it('keeps a CR that does not end the line', () => {
    expect(split(['a\rb\n', '\rc\n'])).toEqual(['a\rb', '\rc']);
  });

  it('decodes a UTF-8 character split across chunks', () => {
    const bytes = Buffer.from('naïve €\n');
    for (let cut = 0; cut <= bytes.length; cut++) {
      expect(split([bytes.subarray(0, cut), bytes.subarray(cut)])).toEqual(['naïve €']);
    }
  });

  it('flushes a partial last line on end()', () => {
    expect(split(['a\nlast'])).toEqual(['a', 'last']);
    expect(split(['a\n', 'la', 'st'])).toEqual(['a', 'last']);
  });

  it('flushes a partial last line ending in CR without the CR', () => {
    expect(split(['tail\r'])).toEqual(['tail']);
  });

  it('emits nothing on end() for an empty stream or one that ended with a newline', () => {
    expect(split([])).toEqual([]);
    expect(split([Buffer.alloc(0)])).toEqual([]);
    expect(split(['a\n'])).toEqual(['a']);
  });

  it('clears the partial line on end(), so a second end() emits nothing more', () => {
    const lines: string[] = [];
    const splitter = new LineSplitter({ onLine: (line) => lines.push(line) });
    splitter.write(Buffer.from('x'));
    splitter.end();
    splitter.end();
    expect(lines).toEqual(['x']);
  });
});

describe('LineSplitter: maxLineBytes', () => {
  it('cuts an unterminated line at maxLineBytes with " [line cut]" and continues with the rest', () => {
    expect(split(['abcdefghij'], { maxLineBytes: 4 })).toEqual(['abcd [line cut]', 'efgh [line cut]', 'ij']);
  });

  it('cuts as soon as the held bytes pass the limit, without waiting for a newline', () => {
    expect(split(['abc', 'def'], { maxLineBytes: 4 }, false)).toEqual(['abcd [line cut]']);
  });

  it('does not cut a line of exactly maxLineBytes', () => {
    expect(split(['abcd\n'], { maxLineBytes: 4 })).toEqual(['abcd']);
    expect(split(['abcd', '\n'], { maxLineBytes: 4 })).toEqual(['abcd']);
    expect(split(['ab', 'cd'], { maxLineBytes: 4 })).toEqual(['abcd']);
  });

  it('cuts at 4096 bytes by default', () => {
    const lines = split(['x'.repeat(5000)]);
    expect(lines).toEqual([`${'x'.repeat(4096)} [line cut]`, 'x'.repeat(904)]);
  });

  it('cuts a long line that arrives with its newline in the same chunk', () => {
    expect(split(['abcdefgh\n'], { maxLineBytes: 4 })).toEqual(['abcd [line cut]', 'efgh']);
  });

  it('cuts a long line completed by a later chunk holding its newline', () => {
    expect(split(['abc', 'defgh\n'], { maxLineBytes: 4 })).toEqual(['abcd [line cut]', 'efgh']);
  });

  it('never emits more than maxLineBytes of one line, whatever the chunking', () => {
    const text = `${'a'.repeat(50)}\n${'b'.repeat(7)}\n${'c'.repeat(33)}`;
    for (const size of [1, 3, 10, 64, text.length]) {
      const chunks: string[] = [];
      for (let i = 0; i < text.length; i += size) chunks.push(text.slice(i, i + size));
      for (const line of split(chunks, { maxLineBytes: 8 })) {
        expect(Buffer.byteLength(line.replace(/ \[line cut\]$/, ''))).toBeLessThanOrEqual(8);
      }
    }
  });
});

describe('LineSplitter: maxBytes', () => {
  it('logs lines until maxBytes (each line counting its newline), then reports the rest on end()', () => {
    expect(split(['aaaa\nbbbb\ncccc\ndddd\n'], { maxBytes: 10 })).toEqual(['aaaa', 'bbbb', '[10 more bytes of stderr not logged]']);
  });

  it('counts the same whether the stream comes in one chunk or many', () => {
    const text = 'aaaa\nbbbb\ncccc\ndddd\n';
    const expected = ['aaaa', 'bbbb', '[10 more bytes of stderr not logged]'];
    expect(split([...text], { maxBytes: 10 })).toEqual(expected);
    expect(split(['aaaa\n', 'bbbb\n', 'cccc\n', 'dddd\n'], { maxBytes: 10 })).toEqual(expected);
  });

  it('logs the line that crosses the budget in full, then drops everything after it', () => {
    expect(split(['aaaa\nbbbbbbbb\ncc\n', 'more'], { maxBytes: 6 })).toEqual(['aaaa', 'bbbbbbbb', '[7 more bytes of stderr not logged]']);
  });

  it('counts an unfinished line after the budget as dropped, not logged, on end()', () => {
    expect(split(['aaaa\n', 'zz'], { maxBytes: 5 })).toEqual(['aaaa', '[2 more bytes of stderr not logged]']);
  });

  it('counts a partial line held when the budget ran out as dropped', () => {
    // 'abcdefghij' is cut into 'abcd' (budget now used up) and 'efgh', then 'ij' stays partial.
    expect(split(['abcdefghij'], { maxLineBytes: 4, maxBytes: 5 })).toEqual(['abcd [line cut]', '[6 more bytes of stderr not logged]']);
  });

  it('emits no summary when nothing was dropped, even at exactly the budget', () => {
    expect(split(['aaaa\nbbbb\n'], { maxBytes: 10 })).toEqual(['aaaa', 'bbbb']);
  });

  it('stays silent between the budget running out and end()', () => {
    const lines = split(['aaaa\n', 'bbbb\n', 'cccc\n'], { maxBytes: 5 }, false);
    expect(lines).toEqual(['aaaa']);
  });

  it('counts dropped bytes across many large chunks', () => {
    const chunk = Buffer.alloc(100_000, 0x0a);
    expect(split(['x\n', chunk, chunk, chunk], { maxBytes: 2 }).at(-1)).toBe('[300000 more bytes of stderr not logged]');
  });

  it('uses a 64 KiB budget by default', () => {
    const line = `${'x'.repeat(1023)}\n`; // 1 KiB with its newline
    const lines = split([line.repeat(70)]);
    expect(lines).toHaveLength(65);
    expect(lines.at(-1)).toBe(`[${6 * 1024} more bytes of stderr not logged]`);
  });
});
