/**
 * @module
 * Function names. A name becomes a folder name, a URL segment and part of container and GC-root
 * names, so it is checked before it reaches any of them.
 */
import { FnixError } from '../errors.ts';

/** A DNS label: lower-case letters, digits and inner hyphens, 1 to 63 characters. */
export const FUNCTION_NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** True when `name` is a valid function name. */
export function isFunctionName(name: string): boolean {
  return FUNCTION_NAME_PATTERN.test(name);
}

/** Throws FUNCTION_NAME_INVALID unless `name` is a valid function name. */
export function assertFunctionName(name: string): void {
  if (!isFunctionName(name)) {
    throw new FnixError(
      'FUNCTION_NAME_INVALID',
      `invalid function name ${JSON.stringify(name.slice(0, 80))}: use 1-63 lower-case letters, digits and inner hyphens`,
      { details: { pattern: FUNCTION_NAME_PATTERN.source } },
    );
  }
}
