/**
 * @module
 * How one secret's value is sealed at rest: AES-256-GCM (node:crypto), a fresh random 12-byte nonce
 * per value, and the secret's name as associated data, so that a ciphertext moved to another name
 * (or altered in any bit) fails to open instead of decrypting to something.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/** The key's length: 32 bytes, for AES-256. */
export const SECRETS_KEY_BYTES = 32;
/** GCM's recommended nonce length. */
const NONCE_BYTES = 12;
/** The authentication tag, appended to the ciphertext. */
const TAG_BYTES = 16;

/** One value, sealed: both fields base64. `ciphertext` ends with the 16-byte tag. */
export interface SealedValue {
  nonce: string;
  ciphertext: string;
}

/**
 * Seals `value` under `key`, bound to `name`.
 * @example
 * const sealed = sealValue(key, 'STRIPE_KEY', Buffer.from('sk_live_...'));
 */
export function sealValue(key: Buffer, name: string, value: Uint8Array): SealedValue {
  checkKey(key);
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(name, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(value), cipher.final(), cipher.getAuthTag()]);
  return { nonce: nonce.toString('base64'), ciphertext: ciphertext.toString('base64') };
}

/**
 * Opens what {@link sealValue} sealed. Throws {@link SealError} when the key, the name, the nonce or
 * the ciphertext is not what it was sealed with (GCM's tag does not match).
 */
export function openValue(key: Buffer, name: string, sealed: SealedValue): Buffer {
  checkKey(key);
  const nonce = Buffer.from(sealed.nonce, 'base64');
  const data = Buffer.from(sealed.ciphertext, 'base64');
  if (nonce.length !== NONCE_BYTES || data.length < TAG_BYTES) throw new SealError(`the sealed value of ${name} is malformed`);
  const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(Buffer.from(name, 'utf8'));
  decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(data.subarray(0, data.length - TAG_BYTES)), decipher.final()]);
  } catch (error) {
    throw new SealError(`the sealed value of ${name} does not authenticate (wrong key, or altered)`, { cause: error });
  }
}

/** A sealed value that does not open. */
export class SealError extends Error {
  override name = 'SealError';
}

function checkKey(key: Buffer): void {
  if (key.length !== SECRETS_KEY_BYTES) throw new TypeError(`a secrets key is ${SECRETS_KEY_BYTES} bytes, not ${key.length}`);
}
