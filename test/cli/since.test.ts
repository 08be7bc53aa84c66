/**
 * @module
 * `--since` and `--limit` as the CLI reads them (cli/since.ts): durations, ISO times, and the usage
 * errors for anything else.
 */
import { describe, expect, it } from 'vitest';
import { CliError, EXIT } from '../../cli/errors.ts';
import { parseCount, parseDuration, sinceParam } from '../../cli/since.ts';

const NOW = Date.parse('2026-12-02T01:00:00.000Z');

describe('parseDuration', () => {
  it.each([
    ['30s', 30_000],
    ['10m', 600_000],
    ['2h', 7_200_000],
    ['7d', 604_800_000],
    ['1h30m', 5_400_000],
    ['0s', 0],
  ])('%s is %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', '10', 'm', '10 m', '10min', '-5m', '1.5h', '10M'])('%j is not a duration', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe('sinceParam', () => {
  it('counts a duration back from now, as an ISO time', () => {
    expect(sinceParam('10m', NOW)).toBe('2026-12-02T00:50:00.000Z');
    expect(sinceParam('1d', NOW)).toBe('2026-12-01T01:00:00.000Z');
  });

  it('passes an ISO time on, normalised', () => {
    expect(sinceParam('2026-12-01T10:00:00Z', NOW)).toBe('2026-12-01T10:00:00.000Z');
    expect(sinceParam('2026-12-01T10:00:00+02:00', NOW)).toBe('2026-12-01T08:00:00.000Z');
    expect(sinceParam('2026-12-01', NOW)).toBe('2026-12-01T00:00:00.000Z');
  });

  it.each(['10 minutes', 'yesterday', '2026-13-45', '12:00', '10q'])('%j is a usage error (exit 2) that names the forms', (text) => {
    const error = (() => {
      try {
        sinceParam(text, NOW);
      } catch (caught) {
        return caught;
      }
    })() as CliError;
    expect(error).toBeInstanceOf(CliError);
    expect(error.code).toBe('USAGE');
    expect(error.exitCode).toBe(EXIT.USAGE);
    expect(error.hint).toContain('10m');
  });
});

describe('sinceParam beyond what a date holds', () => {
  it.each(['99999999999d', '999999999999999999999999999999s', '300000000d', '800000d'])('%j is a usage error (exit 2), not a RangeError', (text) => {
    const error = (() => {
      try {
        sinceParam(text, NOW);
      } catch (caught) {
        return caught;
      }
    })() as CliError;
    expect(error).toBeInstanceOf(CliError);
    expect(error).toMatchObject({ code: 'USAGE', exitCode: EXIT.USAGE });
    expect(error.message).toBe(`--since ${JSON.stringify(text)} reaches back before the year 0`);
    expect(error.hint).toContain('shorter duration');
  });

  it('still takes a long one that a date holds', () => {
    expect(sinceParam('36500d', NOW)).toBe('1926-12-27T01:00:00.000Z');
  });
});

describe('parseCount', () => {
  it('takes whole numbers from 1 to the maximum', () => {
    expect(parseCount('1', '--limit')).toBe(1);
    expect(parseCount('10000', '--limit', 10_000)).toBe(10_000);
  });

  it.each(['0', '-1', '1.5', 'ten', '10001', ''])('refuses %j', (text) => {
    expect(() => parseCount(text, '--limit', 10_000)).toThrow(CliError);
  });
});
