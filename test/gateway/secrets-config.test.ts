/**
 * @module
 * FNIX_SECRETS_KEY in loadConfig (gateway/config.ts): unset, the key file is used; set, 32 bytes of
 * base64; anything else is refused with an error naming the variable and never quoting the value.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../gateway/config.ts';

describe('FNIX_SECRETS_KEY', () => {
  it('is undefined unless set', () => {
    expect(loadConfig({}).secretsKey).toBeUndefined();
    expect(loadConfig({ FNIX_SECRETS_KEY: '' }).secretsKey).toBeUndefined();
  });

  it('takes 32 bytes in base64', () => {
    const key = randomBytes(32);
    expect(loadConfig({ FNIX_SECRETS_KEY: key.toString('base64') }).secretsKey?.equals(key)).toBe(true);
    expect(loadConfig({ FNIX_SECRETS_KEY: ` ${key.toString('base64url')}\n` }).secretsKey?.equals(key)).toBe(true);
  });

  it.each([randomBytes(16).toString('base64'), randomBytes(33).toString('base64'), 'not-base64-at-all!!', 'hunter2-but-longer-than-that'])(
    'refuses %j, naming the variable and not quoting the value',
    (value) => {
      let error: unknown;
      try {
        loadConfig({ FNIX_SECRETS_KEY: value });
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toContain('FNIX_SECRETS_KEY');
      expect((error as Error).message).not.toContain(value);
    },
  );
});
