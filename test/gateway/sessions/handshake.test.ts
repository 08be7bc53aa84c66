/**
 * @module
 * The checks a session's upgrade request passes before a container is found for it
 * (gateway/sessions/handshake.ts): a WebSocket handshake, an Origin of this gateway's own, a terminal size.
 */
import { describe, expect, it } from 'vitest';
import { checkHandshake, checkOrigin, readTty } from '../../../gateway/sessions/handshake.ts';
import { FnixError } from '../../../runtime/errors.ts';

const HANDSHAKE = { upgrade: 'websocket', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' };

function codeOf(check: () => unknown): string | undefined {
  try {
    check();
  } catch (error) {
    expect(error).toBeInstanceOf(FnixError);
    return (error as FnixError).code;
  }
  return undefined;
}

describe('checkHandshake', () => {
  it('takes a GET with Upgrade: websocket, a key and version 13 (or 8)', () => {
    expect(codeOf(() => checkHandshake({ method: 'GET', headers: HANDSHAKE }))).toBeUndefined();
    expect(codeOf(() => checkHandshake({ method: 'GET', headers: { ...HANDSHAKE, upgrade: 'WebSocket', 'sec-websocket-version': '8' } }))).toBeUndefined();
  });

  it.each([
    ['a POST', { method: 'POST', headers: HANDSHAKE }],
    ['another protocol', { method: 'GET', headers: { ...HANDSHAKE, upgrade: 'h2c' } }],
    ['no key', { method: 'GET', headers: { ...HANDSHAKE, 'sec-websocket-key': undefined } }],
    ['a key that is not 16 bytes of base64', { method: 'GET', headers: { ...HANDSHAKE, 'sec-websocket-key': 'short' } }],
    ['an old version', { method: 'GET', headers: { ...HANDSHAKE, 'sec-websocket-version': '7' } }],
  ])('refuses %s with SESSION_PROTOCOL_ERROR', (_what, request) => {
    expect(codeOf(() => checkHandshake(request))).toBe('SESSION_PROTOCOL_ERROR');
  });
});

describe('checkOrigin', () => {
  it('takes clients without an Origin, and pages of the Host or of X-Forwarded-Host', () => {
    expect(codeOf(() => checkOrigin({ headers: { host: 'fnix.test:8080' } }))).toBeUndefined();
    expect(codeOf(() => checkOrigin({ headers: { host: 'FNIX.test:8080', origin: 'http://fnix.test:8080' } }))).toBeUndefined();
    expect(
      codeOf(() => checkOrigin({ headers: { host: '127.0.0.1:8080', origin: 'https://fnix.example', 'x-forwarded-host': 'a.example, fnix.example' } })),
    ).toBeUndefined();
  });

  it.each(['http://evil.example', 'null', 'http://fnix.test:1', 'not a url'])('refuses a page from %s with ORIGIN_NOT_ALLOWED', (origin) => {
    expect(codeOf(() => checkOrigin({ headers: { host: 'fnix.test:8080', origin } }))).toBe('ORIGIN_NOT_ALLOWED');
  });
});

describe('readTty', () => {
  it('is no terminal without tty, or with tty=0 or tty=false', () => {
    for (const query of ['', 'tty=0', 'tty=false', 'cols=100']) expect(readTty(new URLSearchParams(query)), query).toBeUndefined();
  });

  it('is 80x24 unless cols and rows say otherwise', () => {
    expect(readTty(new URLSearchParams('tty=1'))).toEqual({ cols: 80, rows: 24 });
    expect(readTty(new URLSearchParams('tty=1&cols=132&rows=50'))).toEqual({ cols: 132, rows: 50 });
  });

  it.each(['cols=0', 'rows=1001', 'cols=1.5', 'cols=-1', 'rows=', 'cols=1e2'])('refuses %s with SESSION_PROTOCOL_ERROR', (size) => {
    expect(codeOf(() => readTty(new URLSearchParams(`tty=1&${size}`)))).toBe('SESSION_PROTOCOL_ERROR');
  });
});
