/**
 * @module
 * Function names (runtime/functions/name.ts): the DNS-label rule, its length bounds, and the
 * FUNCTION_NAME_INVALID error thrown by assertFunctionName.
 */
import { describe, expect, it } from 'vitest';
import { FnixError } from '../../../runtime/errors.ts';
import { FUNCTION_NAME_PATTERN, assertFunctionName, isFunctionName } from '../../../runtime/functions/name.ts';

/** The error assertFunctionName throws for `name` (fails the test if it does not throw). */
function errorOf(name: string): FnixError {
  try {
    assertFunctionName(name);
  } catch (error) {
    expect(error).toBeInstanceOf(FnixError);
    return error as FnixError;
  }
  throw new Error(`expected ${JSON.stringify(name)} to be refused`);
}

const VALID = ['a', '0', 'hello', 'hello-world', 'a-b-c', 'a--b', '9lives', 'fn2', 'x'.repeat(63), `a${'-'.repeat(61)}b`];
const INVALID = [
  '',
  'Hello',
  'HELLO',
  'helloWorld',
  '-a',
  'a-',
  '-',
  'x'.repeat(64),
  'a.b',
  '.',
  '..',
  'a/b',
  '/a',
  'a\\b',
  'a_b',
  'a b',
  ' a',
  'a\n',
  '\na',
  'a\0',
  'é',
  'caf\u00e9',
  'ａ', // fullwidth a
  'a\u200b',
  'ab%2f',
];

describe('isFunctionName', () => {
  it.each(VALID)('accepts %j', (name) => {
    expect(isFunctionName(name)).toBe(true);
  });

  it.each(INVALID)('refuses %j', (name) => {
    expect(isFunctionName(name)).toBe(false);
  });

  it('accepts exactly 1 to 63 characters', () => {
    for (let length = 1; length <= 70; length++) {
      expect(isFunctionName('a'.repeat(length))).toBe(length <= 63);
    }
  });
});

describe('assertFunctionName', () => {
  it.each(VALID)('returns for %j', (name) => {
    expect(() => assertFunctionName(name)).not.toThrow();
  });

  it.each(INVALID)('throws FUNCTION_NAME_INVALID for %j', (name) => {
    const error = errorOf(name);
    expect(error.code).toBe('FUNCTION_NAME_INVALID');
    expect(error.details).toEqual({ pattern: FUNCTION_NAME_PATTERN.source });
  });

  it('quotes the name in its message, cut to 80 characters', () => {
    expect(errorOf('Bad.Name').message).toContain('"Bad.Name"');
    const long = errorOf('x'.repeat(500)).message;
    expect(long).toContain(`"${'x'.repeat(80)}"`);
    expect(long).not.toContain('x'.repeat(81));
  });
});
