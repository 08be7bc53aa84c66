/**
 * @module
 * runtime/serve/server-log.ts: a server's output goes to the log a line at a time with its prefix, and
 * within a budget per window (a clock injected as `now`); the lines dropped are counted and the count
 * is logged as a warning when the next window opens.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Logger } from '../../../runtime/log.ts';
import { LOG_BUDGET_BYTES, LOG_WINDOW_MS, ServerLog } from '../../../runtime/serve/server-log.ts';

/** A logger that keeps what it is told, as `level message`. */
function memoryLog() {
  const lines: string[] = [];
  const log: Logger = {
    info: (message) => lines.push(`info ${message}`),
    warn: (message) => lines.push(`warn ${message}`),
    error: (message) => lines.push(`error ${message}`),
  };
  return { log, lines };
}

/** A clock the test moves. */
function clock(start = 1000) {
  const time = { now: start };
  return { time, now: () => time.now };
}

const PREFIX = '[web i-abc12345]';

describe('ServerLog', () => {
  it('logs each line with the prefix, as info', () => {
    const { log, lines } = memoryLog();
    const server = new ServerLog({ log, prefix: PREFIX });
    server.line('listening on 8080');
    server.line('');
    expect(lines).toEqual([`info ${PREFIX} listening on 8080`, `info ${PREFIX} `]);
  });

  it('splits what attached streams carry into lines, across chunks, with CRLF and a last line without newline', async () => {
    const { log, lines } = memoryLog();
    const server = new ServerLog({ log, prefix: PREFIX });
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    server.attach(stdout);
    server.attach(stderr);
    stdout.write('hel');
    stdout.write('lo\nwor');
    stderr.write('Traceback (most recent call last):\r\n');
    stdout.write('ld\n');
    stdout.end('tail without newline');
    stderr.end();
    await Promise.all([new Promise((resolve) => stdout.on('end', resolve)), new Promise((resolve) => stderr.on('end', resolve))]);
    // Each stream's lines in order; how the two interleave is up to the streams.
    const traceback = `info ${PREFIX} Traceback (most recent call last):`;
    expect(lines).toContain(traceback);
    expect(lines.filter((line) => line !== traceback)).toEqual([`info ${PREFIX} hello`, `info ${PREFIX} world`, `info ${PREFIX} tail without newline`]);
  });

  it('cuts a very long line into pieces rather than holding it', async () => {
    const { log, lines } = memoryLog();
    const server = new ServerLog({ log, prefix: PREFIX });
    const stream = new PassThrough();
    server.attach(stream);
    stream.end(`${'x'.repeat(10_000)}\n`);
    await new Promise((resolve) => stream.on('end', resolve));
    expect(lines.length).toBeGreaterThan(1);
    expect(lines[0]).toMatch(/ \[line cut\]$/);
    expect(lines.map((l) => l.replace(`info ${PREFIX} `, '').replace(' [line cut]', '')).join('')).toBe('x'.repeat(10_000));
  });

  it('logs lines within the budget of a window (each counts its length and a newline) and drops the rest', () => {
    const { log, lines } = memoryLog();
    const { now } = clock();
    const server = new ServerLog({ log, prefix: PREFIX, budgetBytes: 10, windowMs: 1000, now });
    server.line('1234'); // 5
    server.line('1234'); // 10: exactly the budget
    server.line('x'); // 12: over
    server.line(''); // over still
    expect(lines).toEqual([`info ${PREFIX} 1234`, `info ${PREFIX} 1234`]);
  });

  it('opens a new window after windowMs: the budget is whole again, and the count dropped is logged first', () => {
    const { log, lines } = memoryLog();
    const { time, now } = clock();
    const server = new ServerLog({ log, prefix: PREFIX, budgetBytes: 10, windowMs: 1000, now });
    server.line('123456789');
    for (let i = 0; i < 3; i += 1) server.line('dropped');
    time.now += 999;
    server.line('still dropped');
    expect(lines).toEqual([`info ${PREFIX} 123456789`]);
    time.now += 1;
    server.line('123456789');
    server.line('over again');
    expect(lines).toEqual([`info ${PREFIX} 123456789`, `warn ${PREFIX} 4 lines of output were not logged: over 10 bytes in 1 s`, `info ${PREFIX} 123456789`]);
    time.now += 5000;
    server.line('later');
    expect(lines.slice(3)).toEqual([`warn ${PREFIX} 1 lines of output were not logged: over 10 bytes in 1 s`, `info ${PREFIX} later`]);
  });

  // Skipped: the count is logged only when a line comes in a later window, so the lines dropped just
  // before a server goes quiet or exits (a crash's flood of output, say) are never reported.
  // Unskip once ServerLog reports what it dropped when an attached stream ends.
  it('reports the lines dropped when the output ends, though no later window opens', async () => {
    const { log, lines } = memoryLog();
    const { now } = clock();
    const server = new ServerLog({ log, prefix: PREFIX, budgetBytes: 10, windowMs: 60_000, now });
    const stream = new PassThrough();
    server.attach(stream);
    stream.end('123456789\ndropped\ndropped\n');
    await new Promise((resolve) => stream.on('end', resolve));
    expect(lines).toEqual([`info ${PREFIX} 123456789`, `warn ${PREFIX} 2 lines of output were not logged: over 10 bytes in 60 s`]);
  });

  it('warns of nothing when a window passes with nothing dropped', () => {
    const { log, lines } = memoryLog();
    const { time, now } = clock();
    const server = new ServerLog({ log, prefix: PREFIX, budgetBytes: 100, windowMs: 1000, now });
    server.line('a');
    time.now += 1000;
    server.line('b');
    time.now += 1000;
    server.line('c');
    expect(lines).toEqual([`info ${PREFIX} a`, `info ${PREFIX} b`, `info ${PREFIX} c`]);
  });

  it('starts the first window at construction, by the clock given', () => {
    const { log, lines } = memoryLog();
    const { time, now } = clock(50_000);
    const server = new ServerLog({ log, prefix: PREFIX, budgetBytes: 4, windowMs: 1000, now });
    server.line('abc');
    server.line('dropped');
    time.now = 50_999;
    server.line('dropped');
    time.now = 51_000;
    server.line('abc');
    expect(lines).toEqual([`info ${PREFIX} abc`, `warn ${PREFIX} 2 lines of output were not logged: over 4 bytes in 1 s`, `info ${PREFIX} abc`]);
  });

  it('defaults to 1 MiB a minute', () => {
    expect(LOG_BUDGET_BYTES).toBe(1024 * 1024);
    expect(LOG_WINDOW_MS).toBe(60_000);
    const { log, lines } = memoryLog();
    const { time, now } = clock();
    const server = new ServerLog({ log, prefix: PREFIX, now });
    const line = 'y'.repeat(1023); // 1 KiB with its newline
    for (let i = 0; i < 1025; i += 1) server.line(line);
    expect(lines).toHaveLength(1024);
    time.now += 60_000;
    server.line('next');
    expect(lines.slice(1024)).toEqual([`warn ${PREFIX} 1 lines of output were not logged: over 1048576 bytes in 60 s`, `info ${PREFIX} next`]);
  });
});
