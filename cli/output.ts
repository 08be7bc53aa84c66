/**
 * @module
 * Output for people and for scripts: aligned tables, sizes and ages written short, JSON for `--json`,
 * and colours only when the stream is a terminal and NO_COLOR is not set (https://no-color.org).
 */
import type { Paint } from './errors.ts';

/** The colours the CLI uses. */
export interface Palette {
  bold: Paint;
  dim: Paint;
  red: Paint;
  green: Paint;
  yellow: Paint;
}

const sgr =
  (open: number, close: number): Paint =>
  (text) =>
    `\u001b[${open}m${text}\u001b[${close}m`;
const identity: Paint = (text) => text;

/** True when `stream` should get colours: a terminal, and NO_COLOR unset or empty. */
export function useColour(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv): boolean {
  return stream.isTTY === true && !env['NO_COLOR'];
}

/** The palette for a stream: ANSI colours, or none. */
export function paletteFor(colour: boolean): Palette {
  if (!colour) return { bold: identity, dim: identity, red: identity, green: identity, yellow: identity };
  return { bold: sgr(1, 22), dim: sgr(2, 22), red: sgr(31, 39), green: sgr(32, 39), yellow: sgr(33, 39) };
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escapes are what it removes
const ANSI = /\u001b\[[0-9;]*m/g;

/** The width `text` takes on a terminal (its ANSI colours take none). */
export function visibleWidth(text: string): number {
  return [...text.replace(ANSI, '')].length;
}

/**
 * Rows under a header, each column as wide as its widest cell, two spaces apart; the last column is not
 * padded. `paintHeader` paints the header row (bold on a terminal).
 * @example
 * formatTable(['NAME', 'STATUS'], [['hello', 'ready']]) // 'NAME   STATUS\nhello  ready\n'
 */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[], paintHeader: Paint = identity): string {
  const widths = header.map((title, i) => Math.max(visibleWidth(title), ...rows.map((row) => visibleWidth(row[i] ?? ''))));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell + ' '.repeat(widths[i]! - visibleWidth(cell))))
      .join('  ')
      .trimEnd();
  return `${[paintHeader(line(header)), ...rows.map(line)].join('\n')}\n`;
}

/** Key: value lines, the keys aligned. */
export function formatFields(fields: readonly (readonly [string, string])[], paintKey: Paint = identity): string {
  const width = Math.max(0, ...fields.map(([key]) => key.length));
  return fields.map(([key, value]) => `${paintKey(key.padEnd(width))}  ${value}`).join('\n') + (fields.length ? '\n' : '');
}

/** Bytes as people read them: 512 B, 1.9 KiB, 3.7 MiB, 1.2 GiB. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** A duration in milliseconds, short: 12 ms, 1.4 s, 3 m 5 s, 2 h 4 m. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const seconds = Math.round(ms / 1000);
  if (seconds < 3600) return `${Math.floor(seconds / 60)} m ${seconds % 60} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} m`;
}

/** How long ago `iso` was, from `now`: 5 s ago, 3 m ago, 2 h ago, 4 d ago. */
export function formatAge(iso: string, now: number = Date.now()): string {
  const ms = now - Date.parse(iso);
  if (!Number.isFinite(ms)) return iso;
  if (ms < 0) return 'just now';
  const seconds = Math.floor(ms / 1000);
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} m ago`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86_400)} d ago`;
}

/** A value as `--json` prints it: indented, one trailing newline. */
export function formatJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** Where a command writes, and how. */
export interface Output {
  /** Colours for stdout. */
  paint: Palette;
  /** Colours for stderr. */
  paintErr: Palette;
  out(text: string): void;
  err(text: string): void;
}

/** The process's own stdout and stderr. */
export function processOutput(env: NodeJS.ProcessEnv = process.env): Output {
  return {
    paint: paletteFor(useColour(process.stdout, env)),
    paintErr: paletteFor(useColour(process.stderr, env)),
    out: (text) => void process.stdout.write(text),
    err: (text) => void process.stderr.write(text),
  };
}
