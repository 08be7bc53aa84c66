/**
 * @module
 * runtime/serve/server-log.ts's sink, which feeds the records store: every line of a server's stdout
 * and stderr, named by stream, those over the log's own budget included (the store has its own).
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Logger } from '../../../runtime/log.ts';
import { ServerLog } from '../../../runtime/serve/server-log.ts';

const quiet: Logger = { info: () => {}, warn: () => {}, error: () => {} };

describe('ServerLog sink', () => {
  it('is told every line with its stream, past the log budget too', async () => {
    const seen: Array<[string, string]> = [];
    const log = new ServerLog({ log: quiet, prefix: '[lab i-1]', budgetBytes: 10, sink: (stream, line) => seen.push([stream, line]) });
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    log.attach(stdout, 'stdout');
    log.attach(stderr, 'stderr');
    stdout.end('first line, over the budget alone\nsecond\n');
    stderr.end('on stderr\n');
    await new Promise((resolve) => setImmediate(resolve));
    expect(seen).toEqual([
      ['stdout', 'first line, over the budget alone'],
      ['stdout', 'second'],
      ['stderr', 'on stderr'],
    ]);
  });
});
