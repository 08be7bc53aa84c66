/**
 * @module
 * An invoke key's text, `fnixk_<id>_<secret>`: the id (12 letters and digits) names the key in the
 * store and the API, and is not secret; the secret is 32 random bytes, base64url. Only the SHA-256 of
 * the secret is kept: a fast hash is right for a key of 256 random bits, which no dictionary or
 * brute force reaches (a slow password hash protects low-entropy human passwords, which these are not).
 *
 * Also here: where a request carries a key (`X-Fnix-Key`, `Authorization: Bearer`, or on a WebSocket
 * handshake a `Sec-WebSocket-Protocol` value `fnix.key.<key>`, which is what a browser can set), and
 * how those carriers are taken out of what a function sees (gateway/cgi/env.ts, gateway/proxy/headers.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { customAlphabet } from 'nanoid';

/** What every key's text starts with, so that a leaked key is recognisable (and scanners can find it). */
export const KEY_PREFIX = 'fnixk_';
/** A `Sec-WebSocket-Protocol` value carrying a key: this, then the key. */
export const KEY_PROTOCOL_PREFIX = 'fnix.key.';
/** The header that carries a key besides `Authorization`. */
export const KEY_HEADER = 'x-fnix-key';

const ID_LENGTH = 12;
const SECRET_BYTES = 32;
const makeId = customAlphabet('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz', ID_LENGTH);
const KEY_PATTERN = /^fnixk_([0-9A-Za-z]{12})_([A-Za-z0-9_-]{43})$/;
/** A key id as the API takes it. */
export const KEY_ID_PATTERN = /^[0-9A-Za-z]{12}$/;

/** A new key: its id, its whole text (shown once) and the hash of its secret (kept). */
export interface NewKeyText {
  id: string;
  text: string;
  hash: string;
}

/** Makes a new key. */
export function makeKeyText(): NewKeyText {
  const id = makeId();
  const secret = randomBytes(SECRET_BYTES).toString('base64url');
  return { id, text: `${KEY_PREFIX}${id}_${secret}`, hash: hashSecret(secret) };
}

/** A key's text split into its id and secret, or undefined when it is not a key's shape. */
export function parseKeyText(text: string): { id: string; secret: string } | undefined {
  const match = KEY_PATTERN.exec(text);
  return match ? { id: match[1]!, secret: match[2]! } : undefined;
}

/** The kept form of a secret: `sha256:` and the digest, base64url. */
export function hashSecret(secret: string): string {
  return `sha256:${secretDigest(secret).toString('base64url')}`;
}

/** The SHA-256 digest of a secret, which verification compares in constant time. */
export function secretDigest(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

/** Where a request's key came from. */
export type KeyCarrier = 'x-fnix-key' | 'authorization' | 'sec-websocket-protocol';

/** The key a request presents, and which header carried it; undefined when it presents none. */
export function presentedKey(headers: IncomingHttpHeaders, options: { webSocket: boolean }): { text: string; via: KeyCarrier } | undefined {
  const header = headers[KEY_HEADER];
  const own = (Array.isArray(header) ? header[0] : header)?.trim();
  if (own) return { text: own, via: 'x-fnix-key' };
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(headers.authorization ?? '');
  if (bearer) return { text: bearer[1]!, via: 'authorization' };
  if (options.webSocket) {
    const offered = splitProtocols(headers['sec-websocket-protocol']).find((value) => value.startsWith(KEY_PROTOCOL_PREFIX));
    if (offered) return { text: offered.slice(KEY_PROTOCOL_PREFIX.length), via: 'sec-websocket-protocol' };
  }
  return undefined;
}

/** True when an `Authorization` header carries an fnix key (`Bearer fnixk_...`): it is not passed to functions. */
export function isKeyAuthorization(value: string): boolean {
  return /^Bearer\s+fnixk_/i.test(value.trim());
}

/**
 * A `Sec-WebSocket-Protocol` value without the entries that carry keys, or undefined when none is left
 * (the header is then dropped).
 */
export function withoutKeyProtocols(value: string): string | undefined {
  const kept = splitProtocols(value).filter((entry) => !entry.startsWith(KEY_PROTOCOL_PREFIX));
  return kept.length > 0 ? kept.join(', ') : undefined;
}

/** The comma-separated values of a `Sec-WebSocket-Protocol` header (or of several). */
function splitProtocols(value: string | string[] | undefined): string[] {
  return ([] as string[])
    .concat(value ?? [])
    .flatMap((part) => part.split(','))
    .map((entry) => entry.trim())
    .filter(Boolean);
}
