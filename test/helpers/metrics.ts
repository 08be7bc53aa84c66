/**
 * @module
 * Reads a gateway's /metrics the way Prometheus would: the text format, one sample per line.
 */
import { expect } from 'vitest';

/** The samples of one scrape, looked up by name and labels. */
export interface Scrape {
  /** The value of the sample `name` with exactly `labels`; 0 when absent (a counter not yet incremented). */
  value(name: string, labels?: Record<string, string>): number;
  /** Every sample name in the scrape. */
  names: Set<string>;
}

/** GETs `${url}/metrics` and parses it; fails the test if it is not Prometheus text. */
export async function scrape(url: string): Promise<Scrape> {
  const response = await fetch(`${url}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const samples = new Map<string, number>();
  const names = new Set<string>();
  for (const line of (await response.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not a Prometheus sample line: ${line}`);
    const [, name, labelText, value] = match;
    names.add(name!);
    samples.set(key(name!, parseLabels(labelText ?? '')), Number(value));
  }
  return { names, value: (name, labels = {}) => samples.get(key(name, labels)) ?? 0 };
}

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const [, name, value] of text.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[name!] = value!;
  return labels;
}

function key(name: string, labels: Record<string, string>): string {
  const sorted = Object.keys(labels)
    .sort()
    .map((label) => `${label}=${JSON.stringify(labels[label])}`);
  return `${name}{${sorted.join(',')}}`;
}
