/**
 * @module
 * `node --import tsx bench/profile-summary.ts <file.cpuprofile> [rows]`: a V8 CPU profile (Node's
 * `--cpu-prof`; `npm run bench -- --profile` takes one of the warm gateway) as two tables, self time and
 * inclusive time by function, in milliseconds and as a share of the time the main thread was busy.
 * Time inside a system call counts where it was made, including time the thread spent descheduled
 * there (a write that woke an agent which then ran on this CPU), which /proc's CPU time does not.
 */
import { readFile } from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Self and inclusive time by function, µs. */
export function summarizeProfile(profile: Profile): { busyUs: number; self: Map<string, number>; inclusive: Map<string, number> } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const sampled = new Map<number, number>();
  for (const [i, id] of profile.samples.entries()) sampled.set(id, (sampled.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  const label = (n: ProfileNode) => {
    const f = n.callFrame;
    return `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules\/|dist\/)?/, '')}:${f.lineNumber + 1}`;
  };
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let idle = 0;
  for (const [id, us] of sampled) {
    const node = byId.get(id)!;
    const name = label(node);
    if (name.startsWith('(idle)')) idle += us;
    self.set(name, (self.get(name) ?? 0) + us);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const each = label(byId.get(at)!);
      if (seen.has(each)) continue;
      seen.add(each);
      inclusive.set(each, (inclusive.get(each) ?? 0) + us);
    }
  }
  for (const map of [self, inclusive]) for (const name of map.keys()) if (name.startsWith('(idle)') || name.startsWith('(root)')) map.delete(name);
  return { busyUs: profile.endTime - profile.startTime - idle, self, inclusive };
}

function table(title: string, values: Map<string, number>, busyUs: number, rows: number): string {
  const lines = [title];
  for (const [name, us] of [...values].sort((a, b) => b[1] - a[1]).slice(0, rows)) {
    lines.push(`${(us / 1000).toFixed(0).padStart(8)} ms ${((100 * us) / busyUs).toFixed(1).padStart(5)}%  ${name}`);
  }
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, rows = '30'] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: node --import tsx bench/profile-summary.ts <file.cpuprofile> [rows]\n');
    process.exit(2);
  }
  const summary = summarizeProfile(JSON.parse(await readFile(file, 'utf8')) as Profile);
  process.stdout.write(`main thread busy ${(summary.busyUs / 1000).toFixed(0)} ms\n\n`);
  process.stdout.write(`${table('self time:', summary.self, summary.busyUs, Number(rows))}\n\n`);
  process.stdout.write(`${table('inclusive time:', summary.inclusive, summary.busyUs, Number(rows))}\n`);
}
