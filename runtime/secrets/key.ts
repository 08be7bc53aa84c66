/**
 * @module
 * The key that seals secrets at rest: FNIX_SECRETS_KEY when it is set (gateway/config.ts checks it),
 * else `<stateDir>/secrets.key`, 32 random bytes in base64 made at first start (mode 0600, created
 * atomically: two processes starting at once end up with the same key).
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FnixError } from '../errors.ts';
import { createFileOnce } from './atomic-file.ts';
import { SECRETS_KEY_BYTES } from './cipher.ts';

/** The key file's name in the state folder. */
export const SECRETS_KEY_FILE = 'secrets.key';

/** A loaded key and where it came from, for messages (never the key itself). */
export interface SecretsKey {
  key: Buffer;
  source: 'FNIX_SECRETS_KEY' | 'state' | 'generated';
  /** Where it is described: the variable's name, or the key file's path. */
  where: string;
}

/** Decodes a base64 key of exactly 32 bytes; undefined when `text` is not one. */
export function decodeSecretsKey(text: string): Buffer | undefined {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) return undefined;
  const key = Buffer.from(trimmed, trimmed.includes('-') || trimmed.includes('_') ? 'base64url' : 'base64');
  return key.length === SECRETS_KEY_BYTES ? key : undefined;
}

/**
 * The key: `fromEnv` (FNIX_SECRETS_KEY, decoded) if given, else the state folder's key file, made
 * when missing. Throws SECRETS_KEY_INVALID when the file holds no 32-byte key.
 */
export async function loadSecretsKey(stateDir: string, fromEnv?: Buffer): Promise<SecretsKey> {
  if (fromEnv) return { key: fromEnv, source: 'FNIX_SECRETS_KEY', where: 'FNIX_SECRETS_KEY' };
  const file = join(stateDir, SECRETS_KEY_FILE);
  const fresh = randomBytes(SECRETS_KEY_BYTES);
  if (await createFileOnce(file, `${fresh.toString('base64')}\n`, 0o600)) return { key: fresh, source: 'generated', where: file };
  fresh.fill(0);
  const key = decodeSecretsKey(await readFile(file, 'utf8'));
  if (!key) {
    throw new FnixError(
      'SECRETS_KEY_INVALID',
      `${file} does not hold a secrets key (32 bytes in base64): restore it from a backup, or set FNIX_SECRETS_KEY to the key the secrets were set with`,
      { details: { file } },
    );
  }
  return { key, source: 'state', where: file };
}
