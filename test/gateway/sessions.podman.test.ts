/**
 * @module
 * WebSocket sessions against a real gateway and real containers, driven by a ws client with the channel
 * protocol.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { EXAMPLES_DIR, FIXTURES_DIR, functionsFrom, startTestGateway, type TestGateway } from '../helpers/gateway.ts';

let gateway: TestGateway;

beforeAll(async () => {
  gateway = await startTestGateway({ functionsDir: await functionsFrom(EXAMPLES_DIR, FIXTURES_DIR) });
});
afterAll(async () => {
  await gateway?.close();
});

/** A session client that collects what each channel carries, and the close. */
async function open(path: string) {
  const ws = new WebSocket(gateway.url.replace('http', 'ws') + path);
  const channels = new Map<number, Buffer[]>();
  const closed = new Promise<{ code: number; status: any }>((resolve) =>
    ws.on('close', (code) => {
      const status = channels.get(3);
      resolve({ code, status: status ? JSON.parse(Buffer.concat(status).toString()) : undefined });
    }),
  );
  ws.on('message', (data: Buffer) => {
    const list = channels.get(data[0]!) ?? [];
    list.push(data.subarray(1));
    channels.set(data[0]!, list);
  });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  return {
    ws,
    closed,
    text: (channel: number) => Buffer.concat(channels.get(channel) ?? []).toString(),
    bytes: (channel: number) => Buffer.concat(channels.get(channel) ?? []),
    send: (channel: number, payload: string | Buffer = '') => ws.send(Buffer.concat([Buffer.of(channel), Buffer.from(payload)])),
  };
}

describe('WebSocket sessions', () => {
  it('pipes stdin to stdout byte-exact, binary included, and ends with the exit status', async () => {
    const session = await open('/sessions/base64');
    const data = randomBytes(100_000);
    session.send(0, data);
    session.send(0); // end of input
    const { code, status } = await session.closed;
    expect(status).toEqual({ exitCode: 0 });
    expect(code).toBe(1000);
    expect(Buffer.from(session.text(1).replace(/\s/g, ''), 'base64').equals(data)).toBe(true);
  });

  it('carries stderr on channel 2 and a non-zero exit code in the status', async () => {
    const session = await open('/sessions/exit-3');
    const { status } = await session.closed;
    expect(status).toEqual({ exitCode: 3 });
    expect(session.text(2).length).toBeGreaterThan(0);
  });

  it('answers an unknown function before the upgrade with the JSON 404', async () => {
    const response = await fetch(`${gateway.url}/sessions/nope`, { headers: { connection: 'upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } });
    expect(response.status).toBe(404);
    expect(((await response.json()) as any).error.code).toBe('FUNCTION_NOT_FOUND');
  });

  it('refuses a text frame with an error status and 1003', async () => {
    const session = await open('/sessions/forever');
    session.ws.send('hello');
    const { code, status } = await session.closed;
    expect(code).toBe(1003);
    expect(status.error.code).toBe('SESSION_PROTOCOL_ERROR');
  });

  it('runs on a terminal with tty=1: isatty, the size, and resize', async () => {
    const session = await open('/sessions/shell-test?tty=1&cols=100&rows=30');
    session.send(0, 'stty size; [ -t 0 ] && echo is-a-tty\n');
    await new Promise((r) => setTimeout(r, 500));
    session.send(4, JSON.stringify({ cols: 132, rows: 50 }));
    await new Promise((r) => setTimeout(r, 200));
    session.send(0, 'stty size; exit 7\n');
    const { status } = await session.closed;
    expect(status).toEqual({ exitCode: 7 });
    const out = session.text(1);
    expect(out).toContain('30 100');
    expect(out).toContain('is-a-tty');
    expect(out).toContain('50 132');
  });
});
