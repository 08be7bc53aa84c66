/**
 * @module
 * gateway/connection-limit.ts: the open-files limit read from /proc/self/limits, and the connections
 * it leaves once fnix keeps its own descriptors.
 */
import { describe, expect, it } from 'vitest';
import {
  BASE_RESERVE,
  connectionBudget,
  ConnectionBudgetError,
  MIN_CONNECTIONS,
  PER_CONTAINER_RESERVE,
  readOpenFilesLimit,
  reserveFor,
} from '../../gateway/connection-limit.ts';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max processes             96549                96549                processes
Max open files            2048                 4096                 files
Max locked memory         8388608              8388608              bytes
`;

describe('readOpenFilesLimit', () => {
  it('reads the soft limit, the one that applies', () => {
    expect(readOpenFilesLimit(LIMITS)).toBe(2048);
    expect(readOpenFilesLimit(LIMITS.replace('2048 ', 'unlimited'))).toBeUndefined();
    expect(readOpenFilesLimit('nothing here')).toBeUndefined();
  });

  it("reads this process's own, which Node raised to the hard limit as it started", () => {
    expect(readOpenFilesLimit()).toBeGreaterThan(0);
  });
});

describe('connectionBudget', () => {
  it('leaves the limit less a reserve that grows with the containers', () => {
    expect(reserveFor(48)).toBe(BASE_RESERVE + 48 * PER_CONTAINER_RESERVE);
    expect(connectionBudget({ openFiles: 20_000, maxContainers: 48 })).toEqual({
      maxConnections: 20_000 - reserveFor(48),
      reserve: reserveFor(48),
      openFiles: 20_000,
    });
  });

  it('takes FNIX_MAX_CONNECTIONS when it fits, and refuses it when it does not, naming both fixes', () => {
    expect(connectionBudget({ openFiles: 20_000, maxContainers: 48, configured: 500 }).maxConnections).toBe(500);
    expect(() => connectionBudget({ openFiles: 2048, maxContainers: 48, configured: 2000 })).toThrow(ConnectionBudgetError);
    expect(() => connectionBudget({ openFiles: 2048, maxContainers: 48, configured: 2000 })).toThrow(
      /FNIX_MAX_CONNECTIONS=2000 .* set it to 1664 at most, or raise the limit/,
    );
  });

  it('refuses a limit that leaves too few connections, saying how far to raise it', () => {
    const reserve = reserveFor(48);
    expect(() => connectionBudget({ openFiles: reserve + MIN_CONNECTIONS - 1, maxContainers: 48 })).toThrow(
      new RegExp(`raise the limit to at least ${reserve + MIN_CONNECTIONS}`),
    );
    expect(connectionBudget({ openFiles: reserve + MIN_CONNECTIONS, maxContainers: 48 }).maxConnections).toBe(MIN_CONNECTIONS);
  });

  it('falls back to the setting, or a fixed bound, where the limit cannot be read', () => {
    expect(connectionBudget({ openFiles: undefined, maxContainers: 48 }).maxConnections).toBe(16_384);
    expect(connectionBudget({ openFiles: undefined, maxContainers: 48, configured: 100 }).maxConnections).toBe(100);
  });
});
