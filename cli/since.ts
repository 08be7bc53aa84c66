/**
 * @module
 * `--since`: a duration back from now (`30s`, `10m`, `2h`, `7d`, or combined, `1h30m`) or an ISO time,
 * checked here so that a typo is a usage error before anything is asked of the gateway.
 */
import { usageError } from './errors.ts';

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(?:\d+[smhd])+$/;

/** Milliseconds in a duration like `10m` or `1h30m`; undefined when `text` is not one. */
export function parseDuration(text: string): number | undefined {
  if (!DURATION.test(text)) return undefined;
  let ms = 0;
  for (const [, amount, unit] of text.matchAll(/(\d+)([smhd])/g)) ms += Number(amount) * UNIT_MS[unit!]!;
  return ms;
}

/**
 * The `since` the gateway is sent: `--since` as an ISO time. A duration is counted back from `now` (this
 * machine's clock), so the gateway gets a time whatever units it knows.
 * @example
 * sinceParam('10m', Date.parse('2026-12-02T01:00:00Z')) // '2026-12-02T00:50:00.000Z'
 */
export function sinceParam(text: string, now: number = Date.now()): string {
  const ms = parseDuration(text.trim());
  if (ms !== undefined) {
    const since = new Date(now - ms);
    // A Date holds ±100,000,000 days around 1970: a duration reaching further back is no time at all.
    if (Number.isNaN(since.getTime()) || since.getFullYear() < 0)
      throw usageError(`--since ${JSON.stringify(text)} reaches back before the year 0`, 'give a shorter duration (30s, 10m, 2h, 7d), or an ISO time');
    return since.toISOString();
  }
  // An ISO date or time: 2026-12-01, 2026-12-01T10:00, 2026-12-01T10:00:00Z.
  if (/^\d{4}-\d{2}-\d{2}(?:[T ][\d:.]+(?:Z|[+-]\d{2}:?\d{2})?)?$/.test(text.trim())) {
    const time = Date.parse(text.trim());
    if (Number.isFinite(time)) return new Date(time).toISOString();
  }
  throw usageError(
    `--since ${JSON.stringify(text)} is neither a duration nor a time`,
    'give a duration back from now (30s, 10m, 2h, 7d, 1h30m) or an ISO time (2026-12-01T10:00:00Z)',
  );
}

/** A positive whole number for an option like `--limit`; a usage error otherwise. */
export function parseCount(text: string, option: string, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > max)
    throw usageError(`${option} ${JSON.stringify(text)} must be a whole number from 1 to ${max}`);
  return Number(text);
}
