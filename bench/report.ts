/**
 * @module
 * The benchmark's report: its JSON shape, the targets it is judged against, and the printed table.
 */
import type { ClosureWarmResult } from './closure.ts';
import type { RefillRound } from './refill.ts';
import type { ServeLanguageResult, ServeResult } from './serve.ts';
import type { SideBySideResult } from './side-by-side.ts';
import type { Summary } from './stats.ts';
import type { StoreMounts } from './store-mounts.ts';
import type { WrkResult } from './wrk.ts';

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

/** A large closure on the warm path and at a cold start (bench/closure.ts, bench/store-mounts.ts). */
export interface ClosureReport extends ClosureWarmResult {
  /** Every warm container's store mounts, read after the closure's rows. */
  storeMounts: StoreMounts;
  /** (e) in turns: the busybox function (`echo hello`) and the python3 + imagemagick one (`python3 -c 'print(1)'`). */
  cold: { busybox: Summary; large: Summary };
}

/** A target of the warm-path issue, and whether this run met it. */
export interface TargetResult {
  name: string;
  target: string;
  observed: string;
  met: boolean;
}

/** What a run ran on. */
export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryBytes: number;
  kernel: string;
  node: string;
  podman: string;
}

/** The serve functions' rows (bench/serve.ts) and their targets. */
export interface ServeReport extends ServeResult {
  targets: TargetResult[];
}

/** What `npm run bench -- --only=serve` writes: the serve functions' rows alone. */
export interface ServeOnlyReport {
  date: string;
  quick: boolean;
  only: 'serve';
  machine: Machine;
  serve: ServeReport;
  wallMs: number;
}

/** Everything `npm run bench` writes to its JSON file. */
export interface BenchReport {
  date: string;
  quick: boolean;
  machine: Machine;
  workloads: Record<string, WorkloadResults>;
  /** fnix against the floor server (a fork per request, in C) on the host and in a container, by wrk. */
  sideBySide: Record<string, SideBySideResult>;
  closure: ClosureReport;
  refill: { rounds: RefillRound[]; medianPerSecond: number };
  /** `soak` runs with npm start's Node flags; `soakWithNodeDefaults` the same, with Node's own heap settings. */
  gateway: { rssIdleBytes: number; rssPeakBytes: number; soak: SoakResult; soakWithNodeDefaults: SoakResult };
  /** Serve functions against a process per request and against the same server on the host; their targets are `serve.targets`. */
  serve: ServeReport;
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
  const sideBySide = sideBySideTargets(report);
  return [
    ...sideBySide,
    ...closureTargets(report.closure),
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

/** The warm-path targets: fnix against the floor server in a container, in the same run. */
function sideBySideTargets(report: BenchReport): TargetResult[] {
  const trivial = report.sideBySide['trivial'];
  const json = report.sideBySide['json'];
  if (!trivial || !json) return [];
  const { fnix, floorContainer } = trivial;
  const p50Ratio = fnix.c1.p50 / floorContainer.c1.p50;
  const rpsRatio = fnix.c8.rps / floorContainer.c8.rps;
  const tail = fnix.c8.p99 / fnix.c8.p50;
  const worst = Math.max(fnix.c1.max, fnix.c8.max, json.fnix.c1.max, json.fnix.c8.max);
  const jsonRatio = json.fnix.c1.p50 / json.floorContainer.c1.p50;
  const errors = [fnix, json.fnix].reduce((sum, rows) => sum + rows.c1.errors + rows.c8.errors, 0);
  return [
    {
      name: 'warm p50 c1 / floor in a container',
      target: '<= 1.3x',
      observed: `${p50Ratio.toFixed(2)}x (${ms(fnix.c1.p50)} / ${ms(floorContainer.c1.p50)} ms)`,
      met: p50Ratio <= 1.3,
    },
    {
      name: 'req/s c8 / floor in a container',
      target: '>= 0.8x, 0 errors',
      observed: `${rpsRatio.toFixed(2)}x (${fnix.c8.rps.toFixed(0)} / ${floorContainer.c8.rps.toFixed(0)}), ${errors} errors`,
      met: rpsRatio >= 0.8 && errors === 0,
    },
    { name: 'warm p99 c8 / p50 c8', target: '<= 5x', observed: `${tail.toFixed(1)}x (${ms(fnix.c8.p99)} / ${ms(fnix.c8.p50)} ms)`, met: tail <= 5 },
    { name: 'slowest warm request, whole run', target: '<= 50 ms', observed: `${ms(worst)} ms`, met: worst <= 50 },
    {
      name: 'json p50 c1 / floor (gojq) in a container',
      target: '<= 1.2x',
      observed: `${jsonRatio.toFixed(2)}x (${ms(json.fnix.c1.p50)} / ${ms(json.floorContainer.c1.p50)} ms)`,
      met: jsonRatio <= 1.2,
    },
  ];
}

/**
 * How much slower `echo` may be with python3's and imagemagick's closure than with busybox's alone: a
 * fifth of what the lightest work done per store path would add (a stat of each of the closure's 69 from
 * Node takes about 1 ms here), and several times the rounds' noise.
 */
const CLOSURE_GROWTH_MS = 0.2;

/** The large closure's targets: python3 warm against its own start on the host, no growth with the closure, the cold start. */
function closureTargets(closure: ClosureReport): TargetResult[] {
  const { python, echo, cold, storeMounts } = closure;
  const coldRatio = cold.large.p50 / cold.busybox.p50;
  const mounts = [...new Set(storeMounts.storeMounts)].join(', ') || 'none';
  return [
    marginTarget('python3 warm p50 c1 - spawned on the host', python.fnix, python.spawnHost, 1.5),
    marginTarget('echo p50 c1, large closure - busybox only', echo.large, echo.busybox, CLOSURE_GROWTH_MS),
    {
      name: 'store mounts of every warm container',
      target: '1 each, 0 copied',
      observed: `${storeMounts.containers} containers, ${mounts} each, ${storeMounts.upperEntries} entries copied up`,
      met: storeMounts.containers > 0 && storeMounts.storeMounts.every((n) => n === 1) && storeMounts.upperEntries === 0,
    },
    {
      name: 'cold p50, python3 + imagemagick / busybox',
      target: '<= 1.5x',
      observed: `${coldRatio.toFixed(2)}x (${ms(cold.large.p50)} / ${ms(cold.busybox.p50)} ms)`,
      met: coldRatio <= 1.5 && cold.large.errors === 0 && cold.busybox.errors === 0,
    },
  ];
}

/** How far above the same server on the host fnix's serve mode may answer, one request at a time. */
const SERVE_MARGIN_MS = 1;
/** How many times faster than a process per request Python's handler must be as a serve function. */
const SERVE_OVER_PROCESS = 40;
/** Node's handler as a serve function at concurrency 8. */
const SERVE_NODE_C8_RPS = 1500;
const SERVE_RSS_MB = 200;

/** The serve functions' targets (issue 16), judged on `serve`. */
export function judgeServeTargets(serve: ServeResult): TargetResult[] {
  const { python, node } = serve;
  // The issue's premise: the interpreter's start as a plain command pays it (python3, ~75 ms). The
  // ratio against the handler started as fast as it can be (python3 -S) is reported beside it.
  const plain = python.perProcessDefault ?? python.perProcess;
  const ratio = plain.p50 / python.fnix.c1.p50;
  const fastRatio = python.perProcess.p50 / python.fnix.c1.p50;
  const perProcessErrors = plain.errors + python.perProcess.errors + python.fnix.c1.errors;
  const nodeErrors = node.fnix.c1.errors + node.fnix.c8.errors;
  const rss = serve.gateway.rssPeakC8Bytes;
  return [
    marginTarget('python serve p50 c1 - server on the host', python.fnix.c1, python.host.c1, SERVE_MARGIN_MS),
    marginTarget('node serve p50 c1 - server on the host', node.fnix.c1, node.host.c1, SERVE_MARGIN_MS),
    {
      name: 'python p50 c1, per request (python3 hello.py) / serve',
      target: `>= ${SERVE_OVER_PROCESS}x`,
      observed:
        `${ratio.toFixed(1)}x (${ms(plain.p50)} / ${ms(python.fnix.c1.p50)} ms); with python3 -S: ${fastRatio.toFixed(1)}x (${ms(python.perProcess.p50)} ms)` +
        (perProcessErrors ? `, ${perProcessErrors} errors` : ''),
      met: ratio >= SERVE_OVER_PROCESS && perProcessErrors === 0,
    },
    {
      name: 'node serve req/s c8, through fnix',
      target: `>= ${SERVE_NODE_C8_RPS} req/s, 0 errors`,
      observed: `${node.fnix.c8.rps.toFixed(0)} req/s (on the host ${node.host.c8.rps.toFixed(0)}), ${nodeErrors} errors`,
      met: node.fnix.c8.rps >= SERVE_NODE_C8_RPS && nodeErrors === 0,
    },
    {
      name: 'gateway RSS under node serve c8, peak',
      target: `<= ${SERVE_RSS_MB} MB`,
      observed: `${(rss / MB).toFixed(0)} MB (${(serve.gateway.rssIdleBytes / MB).toFixed(0)} MB idle)`,
      met: rss > 0 && rss <= SERVE_RSS_MB * MB,
    },
  ];
}

/** An additive target: `measured`'s p50 at most `limitMs` above `base`'s, neither with an error. */
function marginTarget(name: string, measured: Pick<Summary, 'p50' | 'errors'>, base: Pick<Summary, 'p50' | 'errors'>, limitMs: number): TargetResult {
  const margin = measured.p50 - base.p50;
  const errors = measured.errors + base.errors;
  return {
    name,
    target: `<= +${limitMs} ms`,
    observed: `${margin < 0 ? '-' : '+'}${Math.abs(margin).toFixed(2)} ms (${ms(measured.p50)} - ${ms(base.p50)} ms)${errors ? `, ${errors} errors` : ''}`,
    met: margin <= limitMs && errors === 0,
  };
}

const SIDE_BY_SIDE_ROWS: Array<[keyof SideBySideResult, string]> = [
  ['floorHost', 'floor server, on the host'],
  ['floorContainer', 'floor server, in a container'],
  ['fnix', 'fnix warm'],
];

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
  lines.push(
    '',
    "side by side, by wrk (every response checked): a fork per request in C, on the host and in a container confined as fnix's, and fnix",
    sxsRow(['workload', 'target', 'c1 p50', 'c1 p99', 'c1 max', 'c8 req/s', 'c8 p50', 'c8 p99', 'c8 max', 'errors']),
  );
  for (const [workload, result] of Object.entries(report.sideBySide)) {
    for (const [key, label] of SIDE_BY_SIDE_ROWS) {
      const { c1, c8 } = result[key];
      lines.push(
        sxsRow([workload, label, ms(c1.p50), ms(c1.p99), ms(c1.max), c8.rps.toFixed(0), ms(c8.p50), ms(c8.p99), ms(c8.max), String(c1.errors + c8.errors)]),
      );
    }
  }
  lines.push('', "CPU per request at concurrency 8 (the whole machine, wrk included; of it, fnix's gateway process):");
  for (const [workload, result] of Object.entries(report.sideBySide)) {
    const cost = (key: keyof SideBySideResult) => result[key].cpuPerRequestUs;
    const fnix = cost('fnix');
    lines.push(
      `  ${workload.padEnd(8)} floor on the host ${cost('floorHost').machine.toFixed(0)} µs, in a container ${cost('floorContainer').machine.toFixed(0)} µs; fnix ${fnix.machine.toFixed(0)} µs, of which the gateway ${(fnix.gateway ?? 0).toFixed(0)} µs`,
    );
  }
  lines.push(...closureLines(report.closure));
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
    'targets (the trivial function; the large closure):',
  );
  lines.push(...targetLines(report.targets));
  lines.push(...serveLines(report.serve));
  lines.push('', `finished in ${(report.wallMs / 1000).toFixed(0)} s`);
  return `${lines.join('\n')}\n`;
}

/** `--only=serve`'s report as text. */
export function formatServeOnlyReport(report: ServeOnlyReport): string {
  const m = report.machine;
  const lines = [
    `fnix benchmark ${report.date}, serve functions only${report.quick ? ' (quick: too few samples to judge)' : ''}`,
    `${m.cpus} x ${m.cpuModel}, ${(m.memoryBytes / 1024 ** 3).toFixed(0)} GiB, Linux ${m.kernel}, Node ${m.node}, Podman ${m.podman}`,
    ...serveLines(report.serve),
    '',
    `finished in ${(report.wallMs / 1000).toFixed(0)} s`,
  ];
  return `${lines.join('\n')}\n`;
}

function targetLines(targets: TargetResult[]): string[] {
  return targets.map((t) => `  ${t.met ? 'met   ' : 'MISSED'} ${t.name.padEnd(42)} ${t.target.padEnd(20)} ${t.observed}`);
}

/** The serve functions' rows, (iv) and their targets. */
function serveLines(serve: ServeReport): string[] {
  const languages: Array<[string, ServeLanguageResult]> = [
    ['python', serve.python],
    ['node', serve.node],
  ];
  const lines = [
    '',
    'serve functions: a "hello" handler, by wrk (every response checked), the interpreter from the same store path in every row:',
    '  (i) a process per request (python3 hello.py, and python3 -S hello.py; node hello.cjs), (ii) the same handler as a serve function (a stdlib server), (iii) that server on the host',
    sxsRow(['handler', 'how', 'c1 p50', 'c1 p99', 'c1 max', 'c8 req/s', 'c8 p50', 'c8 p99', 'c8 max', 'errors']),
  ];
  for (const [key, r] of languages) {
    const p = r.perProcess;
    const label = r.perProcessDefault ? '(i) process per request, -S, fnix' : '(i) process per request, fnix';
    lines.push(sxsRow([key, label, ms(p.p50), ms(p.p99), ms(p.max), '-', '-', '-', '-', String(p.errors)]));
    const d = r.perProcessDefault;
    if (d) lines.push(sxsRow([key, '(i) process per request, fnix', ms(d.p50), ms(d.p99), ms(d.max), '-', '-', '-', '-', String(d.errors)]));
    for (const [label, rows] of [
      ['(ii) serve mode, fnix warm', r.fnix],
      ['(iii) same server, on the host', r.host],
    ] as const) {
      const { c1, c8 } = rows;
      lines.push(
        sxsRow([key, label, ms(c1.p50), ms(c1.p99), ms(c1.max), c8.rps.toFixed(0), ms(c8.p50), ms(c8.p99), ms(c8.max), String(c1.errors + c8.errors)]),
      );
    }
  }
  lines.push('c1 p50 of (ii) - (iii), round by round (each pair taken one after the other):');
  for (const [key, r] of languages) {
    lines.push(`  ${key.padEnd(8)} ${r.pairs.map((pair) => signed(pair.fnix - pair.host)).join(' ')} ms`);
  }
  lines.push(
    `the gateway's own CPU per request at c8: python ${serve.python.fnix.gatewayCpuPerRequestUs.toFixed(0)} µs, node ${serve.node.fnix.gatewayCpuPerRequestUs.toFixed(0)} µs`,
    `the serve gateway's RSS: ${(serve.gateway.rssIdleBytes / MB).toFixed(0)} MB with its functions warm, ${(serve.gateway.rssPeakC8Bytes / MB).toFixed(0)} MB peak under node at c8, ${(serve.gateway.rssEndBytes / MB).toFixed(0)} MB at the end`,
    '',
    '(iv) the first request after a deploy (git push returned; a new connection, as curl would), against the same request warm just before each push:',
    sxsRow(['handler', 'what', 'n', 'p50', 'p90', 'max', '', '', '', 'errors']),
  );
  for (const [key, r] of languages) {
    const { first, second, settled, warm, pushMs } = r.afterDeploy;
    // How long the pushes that waited waited (bench/serve.ts SETTLE_MS); a quick run has none.
    const settle = `${((r.deploys.find((d) => d.settleMs > 0)?.settleMs ?? 3000) / 1000).toFixed(0)} s`;
    for (const [label, s] of [
      ['git push, start to return', pushMs],
      ['1st request, as the push returns', first],
      ['2nd request, right after it', second],
      [`1st request, ${settle} after the push`, settled],
      ['warm request, before the push', warm],
    ] as const) {
      lines.push(sxsRow([key, label, String(s.n), ms(s.p50), ms(s.p90), ms(s.max), '', '', '', String(s.errors)]));
    }
    const since = r.deploys.filter((d) => d.settleMs === 0).map((d) => d.sincePushMs);
    lines.push(
      `  ${key.padEnd(8)} 1st - warm, p50: ${signed(first.p50 - warm.p50)} ms (${settle} after the push: ${signed(settled.p50 - warm.p50)} ms); push return to the 1st response: ${since.map((v) => ms(v)).join(' ')} ms; from the pushed version: ${r.deploys.filter((d) => d.fromNewVersion).length} of ${r.deploys.length}`,
    );
  }
  lines.push('', 'targets (serve functions):', ...targetLines(serve.targets));
  return lines;
}

function signed(value: number): string {
  if (!Number.isFinite(value)) return '-';
  return `${value < 0 ? '-' : '+'}${Math.abs(value).toFixed(2)}`;
}

/** The large closure's rows: one request at a time, by wrk for fnix, by spawn-floor for the spawns. */
function closureLines(closure: ClosureReport): string[] {
  const size = (c: ClosureReport['closures']['busybox']) =>
    `${c.packages.join(' + ')}: ${c.paths} store path${c.paths === 1 ? '' : 's'}, ${(c.bytes / MB).toFixed(0)} MB`;
  const { python } = closure;
  const rows: Array<[string, string, WrkResult | Summary]> = [
    ['python3', 'spawned on the host (the floor)', python.spawnHost],
    ['python3', 'fnix warm, in turns with it', python.fnix],
    ['python3', 'spawned in a container', python.spawnContainer],
    ['echo', "fnix warm, busybox's closure", closure.echo.busybox],
    ['echo', 'fnix warm, +python3 +imagemagick', closure.echo.large],
    ['cold', 'busybox, echo hello', closure.cold.busybox],
    ['cold', 'python3 + imagemagick, python3', closure.cold.large],
  ];
  const mounts = closure.storeMounts;
  return [
    '',
    `a large closure, one request at a time (${size(closure.closures.large)}; ${size(closure.closures.busybox)}); python3 -c 'print(1)', cold is the first byte with no container:`,
    sxsRow(['command', 'how', 'n', 'p50', 'p90', 'p99', 'max', 'errors']),
    ...rows.map(([command, how, r]) =>
      sxsRow([command, how, String('requests' in r ? r.requests : r.n), ms(r.p50), ms(r.p90), ms(r.p99), ms(r.max), String(r.errors)]),
    ),
    `python3's CPU time per run, median: ${ms(python.cpuMs.host)} ms on the host, ${ms(python.cpuMs.container)} ms in a container`,
    `store: ${mounts.containers} warm containers, mounts at /nix/store per container: ${mounts.storeMounts.join(' ')}; entries in their overlays' upper layers: ${mounts.upperEntries}`,
  ];
}

function soakLine(label: string, soak: SoakResult): string {
  return `${label}: ${soak.requests} requests in ${(soak.durationMs / 1000).toFixed(0)} s (${soak.rps.toFixed(0)} req/s, p99 ${ms(soak.p99)} ms, ${soak.errors} errors): RSS peak ${(soak.rssPeakBytes / MB).toFixed(0)} MB, ${(soak.rssEndBytes / MB).toFixed(0)} MB at the end`;
}

function ms(value: number): string {
  if (!Number.isFinite(value)) return '-';
  return value < 10 ? value.toFixed(2) : value < 100 ? value.toFixed(1) : value.toFixed(0);
}

const WIDTHS = [9, 31, 6, 8, 8, 8, 8, 7, 6];
const SXS_WIDTHS = [9, 31, 7, 7, 7, 9, 7, 7, 7, 6];

function sxsRow(cells: string[]): string {
  return cells.map((cell, i) => (i < 2 ? cell.padEnd(SXS_WIDTHS[i]!) : cell.padStart(SXS_WIDTHS[i]!))).join(' ');
}

function row(cells: string[]): string {
  return cells.map((cell, i) => (i < 2 ? cell.padEnd(WIDTHS[i]!) : cell.padStart(WIDTHS[i]!))).join(' ');
}
