/**
 * @module
 * A test client for fnix sessions: a real ws client speaking the channel protocol, which collects what
 * each channel carries and how the session closed.
 */
import { request as httpRequest } from 'node:http';
import WebSocket from 'ws';

/** The status frame (channel 3), decoded. */
export type SessionStatus = { exitCode?: number; signal?: string; error?: { code: string; message: string } };

/** A connected session. */
export interface SessionClient {
  ws: WebSocket;
  /** The x-fnix-invocation-id of the 101 response. */
  invocationId: string;
  /** The x-fnix-node of the 101 response (the node that runs the session, in a cluster); null without one. */
  node: string | null;
  /** Resolves when the socket has closed: the close code and the status frame, if one came. */
  closed: Promise<{ code: number; status: SessionStatus | undefined }>;
  bytes(channel: number): Buffer;
  text(channel: number): string;
  /** Sends one frame: the channel byte, then the payload. */
  send(channel: number, payload?: string | Buffer): void;
  /** Resolves once channel 1 (or `channel`) has carried `needle`. */
  waitFor(needle: string, channel?: number, timeoutMs?: number): Promise<void>;
}

/** Opens a session at `path` (e.g. `/sessions/echo?tty=1`) on the gateway at `baseUrl`. */
export async function openSession(baseUrl: string, path: string, options: WebSocket.ClientOptions = {}): Promise<SessionClient> {
  const ws = new WebSocket(baseUrl.replace(/^http/, 'ws') + path, options);
  const channels = new Map<number, Buffer[]>();
  const listeners = new Set<() => void>();
  let invocationId = '';
  let node: string | null = null;
  ws.on('upgrade', (response) => {
    invocationId = String(response.headers['x-fnix-invocation-id'] ?? '');
    const header = response.headers['x-fnix-node'];
    node = typeof header === 'string' ? header : null;
  });
  ws.on('message', (data: Buffer) => {
    const list = channels.get(data[0]!) ?? [];
    list.push(data.subarray(1));
    channels.set(data[0]!, list);
    for (const listener of listeners) listener();
  });
  const closed = new Promise<{ code: number; status: SessionStatus | undefined }>((resolve) =>
    ws.on('close', (code) => {
      const status = channels.get(3);
      resolve({ code, status: status ? JSON.parse(Buffer.concat(status).toString()) : undefined });
    }),
  );
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const bytes = (channel: number) => Buffer.concat(channels.get(channel) ?? []);
  return {
    ws,
    invocationId,
    node,
    closed,
    bytes,
    text: (channel) => bytes(channel).toString(),
    send: (channel, payload = '') => ws.send(Buffer.concat([Buffer.of(channel), Buffer.from(payload)])),
    waitFor: (needle, channel = 1, timeoutMs = 10_000) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!bytes(channel).toString().includes(needle)) return;
          listeners.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(
            new Error(
              `channel ${channel} did not carry ${JSON.stringify(needle)} within ${timeoutMs} ms; it has ${JSON.stringify(bytes(channel).toString().slice(-300))}`,
            ),
          );
        }, timeoutMs);
        listeners.add(check);
        check();
      }),
  };
}

/** Sends an upgrade request that the gateway refuses; resolves with the HTTP answer. */
export function refusedUpgrade(
  baseUrl: string,
  path: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; headers: Record<string, unknown>; body: any }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(baseUrl + path, {
      method,
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers },
    });
    req.on('upgrade', () => reject(new Error(`${path} was upgraded; expected a refusal`)));
    req.on('response', (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: JSON.parse(Buffer.concat(chunks).toString()) }));
    });
    req.on('error', reject);
    req.end();
  });
}
