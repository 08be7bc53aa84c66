/**
 * @module
 * What a call throws, or a promise rejects with, checked to be of the expected class; the test fails
 * when nothing is thrown.
 */
import { expect } from 'vitest';

type ErrorClass<T extends Error> = abstract new (...args: never[]) => T;

/** The error `fn` throws, which must be an instance of `type`. */
export function thrownBy<T extends Error>(fn: () => unknown, type: ErrorClass<T>): T {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(type);
    return error as T;
  }
  throw new Error(`expected a ${type.name} to be thrown`);
}

/** The error `promise` rejects with, which must be an instance of `type`. */
export async function rejectionOf<T extends Error>(promise: Promise<unknown>, type: ErrorClass<T>): Promise<T> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(type);
    return error as T;
  }
  throw new Error(`expected a rejection with a ${type.name}`);
}
