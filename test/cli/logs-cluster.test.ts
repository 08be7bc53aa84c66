/**
 * @module
 * `fnix logs`, `fnix invocations` and `fnix invocation` against a cluster's answers (cli/commands/logs.ts):
 * the node printed before each line and record when they carry one (and nothing when they do not),
 * `--node` passed as `?node=`, a node missing from an answer or gone from a follow said on stderr. The
 * commands run in-process against a local HTTP server standing in for the gateway.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Command } from 'commander';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { InvocationRecord, LogLine } from '../../cli/api-types.ts';
import { FnixClient } from '../../cli/client.ts';
import { describeInvocation, describeInvocations, formatLogLine, registerLogs } from '../../cli/commands/logs.ts';
import type { CliContext } from '../../cli/context.ts';
import { paletteFor } from '../../cli/output.ts';

const PLAIN = paletteFor(false);
const LINE: LogLine = { time: '2026-12-02T01:00:00.000Z', function: 'echo', invocationId: 'inv-1', instance: null, stream: 'stderr', line: 'POST /x' };
const RECORD: InvocationRecord = {
  id: 'inv-1',
  function: 'echo',
  version: 'v',
  deployment: null,
  kind: 'http',
  startedAt: '2026-12-02T01:00:00.000Z',
  durationMs: 12,
  outcome: 'OK',
  status: 200,
  exitCode: 0,
  signal: null,
  bytesIn: 0,
  bytesOut: 2,
  cold: false,
  instance: null,
  container: 'c',
};

let server: Server;
let url: string;
let asked: string[] = [];
let handler: (request: IncomingMessage, response: ServerResponse) => void = (_q, response) => response.end();

beforeAll(async () => {
  server = createServer((request, response) => {
    asked.push(request.url!);
    handler(request, response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
beforeEach(() => {
  asked = [];
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

/** Runs `fnix <args>` in-process; resolves with what it wrote. */
async function fnix(...args: string[]): Promise<{ out: string; err: string }> {
  let out = '';
  let err = '';
  const program = new Command('fnix').exitOverride();
  const context: CliContext = {
    env: {},
    output: {
      paint: PLAIN,
      paintErr: PLAIN,
      out: (text) => {
        out += text;
      },
      err: (text) => {
        err += text;
      },
    },
    settings: async () => ({ url, token: 't', tokenSource: 'FNIX_TOKEN', key: undefined, credentialsPath: '/nonexistent' }),
    client: async () => new FnixClient(await context.settings()),
    exitCode: 0,
  };
  registerLogs(program, context);
  await program.parseAsync(['node', 'fnix', ...args]);
  return { out, err };
}

function json(value: unknown) {
  return (_request: IncomingMessage, response: ServerResponse) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify(value));
  };
}

describe('labels', () => {
  it('prints the node before a line that has one, and nothing more for a line without', () => {
    expect(formatLogLine({ ...LINE, node: 'n2' }, PLAIN)).toBe('n2 2026-12-02T01:00:00.000Z stderr [inv-1] POST /x\n');
    expect(formatLogLine(LINE, PLAIN)).toBe('2026-12-02T01:00:00.000Z stderr [inv-1] POST /x\n');
  });

  it('adds a NODE column to records that carry one, and a node field to one record', () => {
    expect(describeInvocations([{ ...RECORD, node: 'n1' }], PLAIN).split('\n')[0]).toMatch(/^NODE {2}ID {5}STARTED/);
    expect(describeInvocations([{ ...RECORD, node: 'n1' }], PLAIN).split('\n')[1]).toMatch(/^n1 {4}inv-1 {2}2026/);
    expect(describeInvocations([RECORD], PLAIN).split('\n')[0]).toMatch(/^ID {5}STARTED/);
    expect(
      describeInvocation({ ...RECORD, node: 'n3' }, PLAIN)
        .split('\n')
        .slice(0, 2),
    ).toEqual(['id         inv-1', 'node       n3']);
    expect(describeInvocation(RECORD, PLAIN)).not.toContain('node');
  });
});

describe('commands against a cluster', () => {
  it('fnix logs: labelled lines, --node as ?node=, a missing node on stderr', async () => {
    handler = json({ lines: [{ ...LINE, node: 'n1' }], missing: [{ node: 'n3', error: 'no answer within 2 s' }] });
    const { out, err } = await fnix('logs', 'echo', '--node', 'n1', '--limit', '5');
    expect(asked).toEqual(['/api/functions/echo/logs?limit=5&node=n1']);
    expect(out).toBe('n1 2026-12-02T01:00:00.000Z stderr [inv-1] POST /x\n');
    expect(err).toBe('fnix: n3 did not answer, so its lines are not shown: no answer within 2 s\n');
    // Single node: no label, nothing on stderr.
    handler = json({ lines: [LINE] });
    expect(await fnix('logs', 'echo')).toEqual({ out: '2026-12-02T01:00:00.000Z stderr [inv-1] POST /x\n', err: '' });
  });

  it('fnix logs --follow: each line labelled, a node-gone event on stderr, and in --json as a line of its own', async () => {
    const stream = [
      { ...LINE, node: 'n1' },
      { event: 'node-gone', node: 'n2', error: 'its stream ended' },
      { ...LINE, node: 'n3', line: 'later' },
    ];
    handler = (_request, response) => {
      response.writeHead(200, { 'content-type': 'application/x-ndjson' });
      response.end(stream.map((v) => `${JSON.stringify(v)}\n`).join(''));
    };
    const { out, err } = await fnix('logs', 'echo', '--follow', '--node', 'n1');
    expect(asked).toEqual(['/api/functions/echo/logs?node=n1&follow=1']);
    expect(out).toBe('n1 2026-12-02T01:00:00.000Z stderr [inv-1] POST /x\nn3 2026-12-02T01:00:00.000Z stderr [inv-1] later\n');
    expect(err).toBe('fnix: n2 is gone from the stream: its stream ended\n');
    const asJson = await fnix('logs', 'echo', '--follow', '--json');
    expect(
      asJson.out
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l)),
    ).toEqual(stream);
    expect(asJson.err).toBe('');
  });

  it('fnix invocations and fnix invocation: the node shown, --node passed on', async () => {
    handler = json({ invocations: [{ ...RECORD, node: 'n2' }], missing: [{ node: 'n3', error: 'connect ECONNREFUSED 10.0.0.3:8080' }] });
    const listed = await fnix('invocations', 'echo', '--node', 'n2');
    expect(asked).toEqual(['/api/functions/echo/invocations?node=n2']);
    expect(listed.out.split('\n')[1]).toMatch(/^n2 {4}inv-1/);
    expect(listed.err).toBe('fnix: n3 did not answer, so its records are not shown: connect ECONNREFUSED 10.0.0.3:8080\n');
    handler = json({ node: 'n2', invocation: { ...RECORD, node: 'n2' }, lines: [{ ...LINE, node: 'n2' }] });
    const one = await fnix('invocation', 'inv-1');
    expect(asked.at(-1)).toBe('/api/invocations/inv-1');
    expect(one.out).toContain('node       n2\n');
    // Its lines are all from that node: not labelled again.
    expect(one.out).toContain('\n2026-12-02T01:00:00.000Z stderr [inv-1] POST /x\n');
    await fnix('invocation', 'inv-1', '--node', 'n2');
    expect(asked.at(-1)).toBe('/api/invocations/inv-1?node=n2');
  });
});
