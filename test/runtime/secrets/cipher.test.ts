/**
 * @module
 * Sealing secrets (runtime/secrets/cipher.ts): a round trip, a fresh nonce per value, and every way a
 * sealed value can be wrong failing to open: another key, another name (the AAD), a flipped bit.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { openValue, SealError, sealValue } from '../../../runtime/secrets/cipher.ts';

const KEY = randomBytes(32);

/** `sealed.ciphertext` with one bit of byte `at` flipped. */
function flip(base64: string, at: number): string {
  const bytes = Buffer.from(base64, 'base64');
  bytes[at] = bytes[at]! ^ 1;
  return bytes.toString('base64');
}

describe('sealValue and openValue', () => {
  it('open what was sealed, binary and empty-adjacent values alike', () => {
    for (const value of [Buffer.from('sk_live_1234'), Buffer.from([0, 255, 10, 0]), randomBytes(64 * 1024), Buffer.from('é')]) {
      expect(openValue(KEY, 'STRIPE_KEY', sealValue(KEY, 'STRIPE_KEY', value)).equals(value)).toBe(true);
    }
  });

  it('use a fresh 12-byte nonce each time, so the same value never seals the same', () => {
    const a = sealValue(KEY, 'A', Buffer.from('same'));
    const b = sealValue(KEY, 'A', Buffer.from('same'));
    expect(Buffer.from(a.nonce, 'base64')).toHaveLength(12);
    expect(a.nonce).not.toBe(b.nonce);
    expect(a.ciphertext).not.toBe(b.ciphertext);
  });

  it('do not keep the value in clear in the sealed form', () => {
    const value = Buffer.from('recognisable-plaintext-value');
    const sealed = sealValue(KEY, 'A', value);
    expect(Buffer.from(sealed.ciphertext, 'base64').includes(value)).toBe(false);
    expect(JSON.stringify(sealed)).not.toContain(value.toString('base64'));
  });

  it('refuse a value moved to another name (the name is associated data)', () => {
    const sealed = sealValue(KEY, 'STRIPE_KEY', Buffer.from('v'));
    expect(() => openValue(KEY, 'OTHER_KEY', sealed)).toThrow(SealError);
  });

  it('refuse another key', () => {
    const sealed = sealValue(KEY, 'A', Buffer.from('v'));
    expect(() => openValue(randomBytes(32), 'A', sealed)).toThrow(SealError);
  });

  it('refuse any altered bit of the ciphertext, the tag or the nonce', () => {
    const sealed = sealValue(KEY, 'A', Buffer.from('a value of some length'));
    const length = Buffer.from(sealed.ciphertext, 'base64').length;
    for (const at of [0, 5, length - 17, length - 16, length - 1]) {
      expect(() => openValue(KEY, 'A', { ...sealed, ciphertext: flip(sealed.ciphertext, at) })).toThrow(SealError);
    }
    expect(() => openValue(KEY, 'A', { ...sealed, nonce: flip(sealed.nonce, 0) })).toThrow(SealError);
    expect(() => openValue(KEY, 'A', { ...sealed, ciphertext: '' })).toThrow(SealError);
  });

  it('take only 32-byte keys', () => {
    expect(() => sealValue(randomBytes(16), 'A', Buffer.from('v'))).toThrow(TypeError);
  });
});
