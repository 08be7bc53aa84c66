/**
 * @module
 * runtime/pool/options.ts: the defaults, and the TypeErrors for bounds that make no sense.
 */
import { describe, expect, it } from 'vitest';
import { MAX_QUEUE, normalizePoolOptions } from '../../../runtime/pool/options.ts';
import { Pool } from '../../../runtime/pool/pool.ts';
import { FakeSource } from './fakes.ts';

const source = new FakeSource();
const settings = { size: 4, idleTtlMs: 300_000, queueTimeoutMs: 10_000 };

describe('pool options', () => {
  it('take the settings as given, and fill in the internal ones', () => {
    expect(normalizePoolOptions({ source, maxContainers: 8, ...settings })).toEqual({
      source,
      maxContainers: 8,
      ...settings,
      maxQueue: MAX_QUEUE,
      onError: expect.any(Function),
    });
    expect(MAX_QUEUE).toBe(256);
    expect(new Pool({ source, maxContainers: 8, ...settings }).stats()).toMatchObject({ size: 4, max: 8, total: 0 });
  });

  it.each([0, -1, 1.5, Number.NaN])('refuse maxContainers %s', (maxContainers) => {
    expect(() => new Pool({ source, ...settings, size: 0, maxContainers })).toThrow(TypeError);
  });

  it.each([-1, 2.5, 5])('refuse size %s with maxContainers 4', (size) => {
    expect(() => new Pool({ source, ...settings, size, maxContainers: 4 })).toThrow(TypeError);
  });

  it('accept a size of 0 and a size of maxContainers', () => {
    expect(new Pool({ source, ...settings, size: 0, maxContainers: 1 }).size).toBe(0);
    expect(new Pool({ source, ...settings, size: 1, maxContainers: 1 }).size).toBe(1);
  });

  it('leave the source alone at construction', () => {
    expect(source.launches).toEqual([]);
  });
});
