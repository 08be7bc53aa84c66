/**
 * @module
 * The session wire protocol's decoding of client frames and encoding of server frames.
 */
import { describe, expect, it } from 'vitest';
import { CHANNEL, decodeClientFrame, encodeFrame, ProtocolViolation } from '../../../gateway/sessions/protocol.ts';

const frame = (channel: number, payload: string | Buffer = '') => Buffer.concat([Buffer.of(channel), Buffer.from(payload)]);

function violationOf(data: Buffer, isBinary = true): ProtocolViolation {
  try {
    decodeClientFrame(data, isBinary);
  } catch (error) {
    expect(error).toBeInstanceOf(ProtocolViolation);
    return error as ProtocolViolation;
  }
  throw new Error('expected a ProtocolViolation');
}

describe('decodeClientFrame', () => {
  it('passes stdin bytes through untouched, binary included, and an empty payload as end of input', () => {
    const bytes = Buffer.from([0, 255, 10, 13, 3]);
    expect(decodeClientFrame(frame(CHANNEL.STDIN, bytes), true)).toEqual({ channel: 'stdin', data: bytes });
    expect(decodeClientFrame(frame(CHANNEL.STDIN), true)).toEqual({ channel: 'stdin', data: Buffer.alloc(0) });
  });

  it('reads resize and signal JSON', () => {
    expect(decodeClientFrame(frame(CHANNEL.RESIZE, '{"cols":120,"rows":40}'), true)).toEqual({ channel: 'resize', cols: 120, rows: 40 });
    expect(decodeClientFrame(frame(CHANNEL.SIGNAL, '{"signal":"SIGINT"}'), true)).toEqual({ channel: 'signal', signal: 'SIGINT' });
  });

  it('refuses text frames with 1003', () => {
    expect(violationOf(Buffer.from('hello'), false).closeCode).toBe(1003);
  });

  it('refuses empty frames, unknown channels and server-only channels with 1008', () => {
    expect(violationOf(Buffer.alloc(0)).closeCode).toBe(1008);
    for (const channel of [CHANNEL.STDOUT, CHANNEL.STDERR, CHANNEL.STATUS, 6, 255]) {
      const violation = violationOf(frame(channel, 'x'));
      expect(violation.closeCode).toBe(1008);
      expect(violation.message).toContain(`channel ${channel}`);
    }
  });

  it('refuses malformed or out-of-range control messages, naming what is expected', () => {
    for (const payload of [
      '{"cols":80}',
      '{"cols":0,"rows":24}',
      '{"cols":80.5,"rows":24}',
      '{"cols":1001,"rows":24}',
      'not json',
      '{"cols":80,"rows":24,"x":1}',
    ]) {
      const violation = violationOf(frame(CHANNEL.RESIZE, payload));
      expect(violation.closeCode).toBe(1008);
      expect(violation.message).toContain('{"cols":N,"rows":N}');
    }
    for (const payload of ['{"signal":"SIGSTOP"}', '{"signal":9}', '{}', '']) {
      expect(violationOf(frame(CHANNEL.SIGNAL, payload)).message).toContain('SIGINT, SIGTERM, SIGKILL, SIGHUP, SIGQUIT');
    }
  });
});

describe('encodeFrame', () => {
  it('prefixes the channel byte', () => {
    expect(encodeFrame(CHANNEL.STDOUT, Buffer.from([0, 1, 2]))).toEqual(Buffer.from([1, 0, 1, 2]));
    expect(encodeFrame(CHANNEL.STATUS, '{"exitCode":0}').toString('utf8', 1)).toBe('{"exitCode":0}');
  });
});
