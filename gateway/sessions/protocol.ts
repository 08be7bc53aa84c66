/**
 * @module
 * The session wire protocol: binary WebSocket frames whose first byte names the channel, after
 * Kubernetes' exec channel protocol. Pure functions, no sockets.
 */
import { z } from 'zod';

/** Channel numbers, the first byte of every frame. */
export const CHANNEL = { STDIN: 0, STDOUT: 1, STDERR: 2, STATUS: 3, RESIZE: 4, SIGNAL: 5 } as const;

/** Signals a client may send (channel 5). */
export const SESSION_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGKILL', 'SIGHUP', 'SIGQUIT'] as const;
export type SessionSignal = (typeof SESSION_SIGNALS)[number];

/** The largest terminal fnix accepts, in columns and rows. */
export const MAX_TERMINAL_SIZE = 1000;

const size = z.number().int().min(1).max(MAX_TERMINAL_SIZE);
const resizeSchema = z.strictObject({ cols: size, rows: size });
const signalSchema = z.strictObject({ signal: z.enum(SESSION_SIGNALS) });

/** A frame from the client, decoded. */
export type ClientFrame = { channel: 'stdin'; data: Buffer } | { channel: 'resize'; cols: number; rows: number } | { channel: 'signal'; signal: SessionSignal };

/** Why a client frame is refused, with the close code it earns (RFC 6455 §7.4.1). */
export class ProtocolViolation extends Error {
  constructor(
    message: string,
    readonly closeCode: 1003 | 1008,
  ) {
    super(message);
    this.name = 'ProtocolViolation';
  }
}

/** Decodes a client frame; throws ProtocolViolation for text frames, unknown channels and bad JSON. */
export function decodeClientFrame(data: Buffer, isBinary: boolean): ClientFrame {
  if (!isBinary) throw new ProtocolViolation('text frames are not part of the protocol: send binary frames whose first byte is the channel', 1003);
  if (data.length === 0) throw new ProtocolViolation('an empty frame has no channel byte', 1008);
  const payload = data.subarray(1);
  switch (data[0]) {
    case CHANNEL.STDIN:
      return { channel: 'stdin', data: payload };
    case CHANNEL.RESIZE: {
      const { cols, rows } = parseJson(payload, resizeSchema, 'resize (channel 4) takes {"cols":N,"rows":N}, 1 to 1000');
      return { channel: 'resize', cols, rows };
    }
    case CHANNEL.SIGNAL: {
      const { signal } = parseJson(payload, signalSchema, `signal (channel 5) takes {"signal":"…"}, one of ${SESSION_SIGNALS.join(', ')}`);
      return { channel: 'signal', signal };
    }
    default:
      throw new ProtocolViolation(`channel ${data[0]} is not one a client may send on (0 stdin, 4 resize, 5 signal)`, 1008);
  }
}

/** A server frame: the channel byte, then the payload. */
export function encodeFrame(channel: number, payload: Uint8Array | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const frame = Buffer.allocUnsafe(1 + body.length);
  frame[0] = channel;
  frame.set(body, 1);
  return frame;
}

function parseJson<T>(payload: Buffer, schema: z.ZodType<T>, expected: string): T {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new ProtocolViolation(`${expected}; got ${JSON.stringify(payload.toString('utf8').slice(0, 80))}`, 1008);
  }
  const result = schema.safeParse(value);
  if (!result.success) throw new ProtocolViolation(`${expected}; got ${JSON.stringify(value).slice(0, 80)}`, 1008);
  return result.data;
}
