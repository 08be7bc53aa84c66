/**
 * @module
 * The CLI's output for people (cli/output.ts): tables, fields, sizes, durations, ages, and when colours
 * are used.
 */
import { describe, expect, it } from 'vitest';
import { formatAge, formatBytes, formatDuration, formatFields, formatTable, paletteFor, useColour, visibleWidth } from '../../cli/output.ts';

describe('formatTable', () => {
  it('aligns each column to its widest cell, two spaces apart, without trailing spaces', () => {
    const table = formatTable(
      ['NAME', 'STATUS', 'NOTE'],
      [
        ['hello', 'ready', ''],
        ['counter-py', 'broken', 'PACKAGE_NOT_FOUND'],
      ],
    );
    expect(table).toBe(['NAME        STATUS  NOTE', 'hello       ready', 'counter-py  broken  PACKAGE_NOT_FOUND', ''].join('\n'));
  });

  it('measures coloured cells by what shows, and paints the header', () => {
    const paint = paletteFor(true);
    const table = formatTable(['A', 'B'], [[paint.green('ok'), 'x']], paint.bold);
    const [header, row] = table.split('\n');
    expect(header).toBe('\u001b[1mA   B\u001b[22m');
    expect(row).toBe('\u001b[32mok\u001b[39m  x');
    expect(visibleWidth(row!)).toBe(5);
  });

  it('prints a header alone for no rows', () => {
    expect(formatTable(['ID', 'NAME'], [])).toBe('ID  NAME\n');
  });
});

describe('formatFields', () => {
  it('aligns the values after the longest key', () => {
    expect(
      formatFields([
        ['name', 'hello'],
        ['deployment', 'd-1'],
      ]),
    ).toBe('name        hello\ndeployment  d-1\n');
    expect(formatFields([])).toBe('');
  });
});

describe('sizes, durations, ages', () => {
  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1024, '1.0 KiB'],
    [1_992_294, '1.9 MiB'],
    [5 * 1024 ** 3, '5.0 GiB'],
  ])('formatBytes(%d) is %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });

  it.each([
    [12.4, '12 ms'],
    [1400, '1.4 s'],
    [185_000, '3 m 5 s'],
    [7_440_000, '2 h 4 m'],
  ])('formatDuration(%d) is %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('says how long ago, from now', () => {
    const now = Date.parse('2026-12-02T01:00:00Z');
    expect(formatAge('2026-12-02T00:59:55Z', now)).toBe('5 s ago');
    expect(formatAge('2026-12-02T00:57:00Z', now)).toBe('3 m ago');
    expect(formatAge('2026-12-01T23:00:00Z', now)).toBe('2 h ago');
    expect(formatAge('2026-11-28T01:00:00Z', now)).toBe('4 d ago');
    expect(formatAge('2026-12-02T01:00:05Z', now)).toBe('just now');
    expect(formatAge('not a time', now)).toBe('not a time');
  });
});

describe('colours', () => {
  it('only on a terminal, and never with NO_COLOR set (to anything but empty)', () => {
    expect(useColour({ isTTY: true }, {})).toBe(true);
    expect(useColour({ isTTY: false }, {})).toBe(false);
    expect(useColour({}, {})).toBe(false);
    expect(useColour({ isTTY: true }, { NO_COLOR: '1' })).toBe(false);
    expect(useColour({ isTTY: true }, { NO_COLOR: '' })).toBe(true);
  });

  it('paints nothing when off', () => {
    const paint = paletteFor(false);
    expect(paint.red('x') + paint.bold('y') + paint.dim('z')).toBe('xyz');
  });
});
