/**
 * @module
 * The benchmark's report: its JSON shape, the targets it is judged against, and the printed table.
 */
import type { RefillRound } from './refill.ts';
import type { Summary } from './stats.ts';

/** One workload's scenarios. */
export interface WorkloadResults {
  /** (a) the command spawned on the host. */
  floor: Summary;
  /** (b) `podman run --rm` per request. */
  naive: Summary;
  /** (c) `podman exec` per request. */
  exec: Summary;
  /** (d) fnix warm, concurrency 1. */
  warm1: Summary;
  /** (d) fnix warm, concurrency 8. */
  warm8: Summary;
  /** (e) fnix cold: time to first byte. */
  cold: Summary;
}

/** The gateway's memory over a long run of the trivial function at concurrency 8. */
export interface SoakResult {
  durationMs: number;
  requests: number;
  errors: number;
  rps: number;
  /** The higher of its turns' p99s. */
  p99: number;
  /** The highest RSS sampled (every 250 ms) while it ran. */
  rssPeakBytes: number;
  /** RSS when it ended. */
  rssEndBytes: number;
}

/** A target of the warm-path issue, and whether this run met it. */
export interface TargetResult {
  name: string;
  target: string;
  observed: string;
  met: boolean;
}

/** Everything `npm run bench` writes to its JSON file. */
export interface BenchReport {
  date: string;
  quick: boolean;
  machine: { cpus: number; cpuModel: string; memoryBytes: number; kernel: string; node: string; podman: string };
  workloads: Record<string, WorkloadResults>;
  refill: { rounds: RefillRound[]; medianPerSecond: number };
  /** `soak` runs with npm start's Node flags; `soakWithNodeDefaults` the same, with Node's own heap settings. */
  gateway: { rssIdleBytes: number; rssPeakBytes: number; soak: SoakResult; soakWithNodeDefaults: SoakResult };
  /** p50 ratios at concurrency 1: (d)/(a), (b)/(d), (c)/(d). */
  ratios: Record<string, { warmOverFloor: number; naiveOverWarm: number; execOverWarm: number }>;
  targets: TargetResult[];
  wallMs: number;
}

const MB = 1024 * 1024;

/** The targets, for the trivial function, judged on `report`. */
export function judgeTargets(report: BenchReport): TargetResult[] {
  const t = report.workloads['trivial']!;
  const ratio = report.ratios['trivial']!;
  return [
    { name: 'warm p50, concurrency 1', target: '<= 3 ms', observed: `${ms(t.warm1.p50)} ms`, met: t.warm1.p50 <= 3 },
    { name: 'warm p99, concurrency 1', target: '<= 15 ms', observed: `${ms(t.warm1.p99)} ms`, met: t.warm1.p99 <= 15 },
    {
      name: 'warm throughput, concurrency 8',
      target: '>= 500 req/s, 0 errors',
      observed: `${Math.round(t.warm8.rps)} req/s, ${t.warm8.errors + t.warm1.errors} errors`,
      met: t.warm8.rps >= 500 && t.warm8.errors === 0 && t.warm1.errors === 0,
    },
    { name: 'cold start, time to first byte p50', target: '<= 500 ms', observed: `${ms(t.cold.p50)} ms`, met: t.cold.p50 <= 500 && t.cold.errors === 0 },
    { name: '(b)/(d): naive over warm', target: '>= 100x', observed: `${ratio.naiveOverWarm.toFixed(0)}x`, met: ratio.naiveOverWarm >= 100 },
    {
      name: 'gateway RSS under load, peak',
      target: '<= 200 MB',
      observed: `${(report.gateway.rssPeakBytes / MB).toFixed(0)} MB`,
      met: report.gateway.rssPeakBytes > 0 && report.gateway.rssPeakBytes <= 200 * MB,
    },
    {
      name: `gateway RSS over a ${(report.gateway.soak.durationMs / 1000).toFixed(0)} s soak, peak`,
      target: '<= 200 MB, 0 errors',
      observed: `${(report.gateway.soak.rssPeakBytes / MB).toFixed(0)} MB (${(report.gateway.soak.rssPeakBytes / report.gateway.rssIdleBytes).toFixed(1)}x idle; Node's defaults ${(report.gateway.soakWithNodeDefaults.rssPeakBytes / MB).toFixed(0)} MB), ${report.gateway.soak.errors} errors`,
      met: report.gateway.soak.rssPeakBytes > 0 && report.gateway.soak.rssPeakBytes <= 200 * MB && report.gateway.soak.errors === 0,
    },
  ];
}

const SCENARIOS: Array<[keyof WorkloadResults, string]> = [
  ['floor', '(a) floor: spawn on the host'],
  ['naive', '(b) naive: podman run --rm'],
  ['exec', '(c) podman exec'],
  ['warm1', '(d) fnix warm, concurrency 1'],
  ['warm8', '(d) fnix warm, concurrency 8'],
  ['cold', '(e) fnix cold, first byte'],
];

/** The report as text: the table, the ratios, the refill rate, memory and the targets. */
export function formatReport(report: BenchReport): string {
  const m = report.machine;
  const lines = [
    `fnix benchmark ${report.date}${report.quick ? ' (quick: too few samples to judge)' : ''}`,
    `${m.cpus} x ${m.cpuModel}, ${(m.memoryBytes / 1024 ** 3).toFixed(0)} GiB, Linux ${m.kernel}, Node ${m.node}, Podman ${m.podman}`,
    '',
    row(['workload', 'scenario', 'n', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'req/s', 'errors']),
  ];
  for (const [workload, results] of Object.entries(report.workloads)) {
    for (const [key, label] of SCENARIOS) {
      const s = results[key];
      lines.push(row([workload, label, String(s.n), ms(s.p50), ms(s.p90), ms(s.p99), ms(s.max), s.rps.toFixed(0), String(s.errors)]));
    }
  }
  lines.push('', 'p50 ratios at concurrency 1:');
  for (const [workload, r] of Object.entries(report.ratios)) {
    lines.push(
      `  ${workload.padEnd(8)} (d)/(a) ${r.warmOverFloor.toFixed(1)}x   (b)/(d) ${r.naiveOverWarm.toFixed(0)}x   (c)/(d) ${r.execOverWarm.toFixed(0)}x`,
    );
  }
  const rounds = report.refill.rounds.map((r) => `${r.containers} in ${r.ms.toFixed(0)} ms`).join(', ');
  lines.push(
    '',
    `(f) pool refill: ${report.refill.medianPerSecond.toFixed(1)} containers/s (median; ${rounds})`,
    `gateway RSS: ${(report.gateway.rssIdleBytes / MB).toFixed(0)} MB idle, ${(report.gateway.rssPeakBytes / MB).toFixed(0)} MB peak under load`,
    soakLine("soak, npm start's flags", report.gateway.soak),
    soakLine("soak, Node's defaults", report.gateway.soakWithNodeDefaults),
    '',
    'targets (trivial function):',
  );
  for (const t of report.targets) lines.push(`  ${t.met ? 'met   ' : 'MISSED'} ${t.name.padEnd(36)} ${t.target.padEnd(24)} ${t.observed}`);
  lines.push('', `finished in ${(report.wallMs / 1000).toFixed(0)} s`);
  return `${lines.join('\n')}\n`;
}

function soakLine(label: string, soak: SoakResult): string {
  return `${label}: ${soak.requests} requests in ${(soak.durationMs / 1000).toFixed(0)} s (${soak.rps.toFixed(0)} req/s, p99 ${ms(soak.p99)} ms, ${soak.errors} errors): RSS peak ${(soak.rssPeakBytes / MB).toFixed(0)} MB, ${(soak.rssEndBytes / MB).toFixed(0)} MB at the end`;
}

function ms(value: number): string {
  if (!Number.isFinite(value)) return '-';
  return value < 10 ? value.toFixed(2) : value < 100 ? value.toFixed(1) : value.toFixed(0);
}

const WIDTHS = [9, 31, 6, 8, 8, 8, 8, 7, 6];

function row(cells: string[]): string {
  return cells.map((cell, i) => (i < 2 ? cell.padEnd(WIDTHS[i]!) : cell.padStart(WIDTHS[i]!))).join(' ');
}
