/**
 * @module
 * `npm run bench -- --quick`: the benchmark itself works end to end (every scenario runs against real
 * Podman and a real gateway, answers are checked byte for byte, the JSON is complete). Its figures are
 * not judged here: a quick run has too few samples, and speed is the benchmark's business, not the tests'.
 * What is not a figure is: every warm container, those that served the python3 + imagemagick functions
 * included, has the store as one mount and nothing copied into it.
 * The cluster's rows (bench/cluster.ts) are not part of this quick run: even `--only=cluster --quick`
 * takes about 90-105 s on 2 cores (two labs of eight network namespaces, three etcd members, five
 * gateway starts and four pushes each), more than this suite's budget allows for a smoke; the cluster
 * suite (test/cluster/*.podman.test.ts) runs the same labs, pushes and HAProxy, and
 * `npm run bench -- --only=cluster --quick` runs the rows by hand.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import type { BenchReport } from '../../bench/report.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('npm run bench', () => {
  it('runs every scenario without an error and writes the report as JSON', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fnix-bench-test-'));
    try {
      const out = join(dir, 'report.json');
      const run = await execa('node', ['--import', 'tsx', 'bench/run.ts', '--quick', `--out=${out}`], { cwd: ROOT, all: true, reject: false });
      expect(run.exitCode, run.all).toBe(0);
      expect(run.stdout).toContain('(b) naive: podman run --rm');
      expect(run.stdout).toContain('targets (the trivial function; the large closure):');
      // Left out of a quick run of everything, and said so (see the module's comment).
      expect(run.stderr).toContain('the cluster rows are left out of a quick run of everything');

      const report = JSON.parse(await readFile(out, 'utf8')) as BenchReport;
      expect(report.quick).toBe(true);
      for (const key of ['trivial', 'echo64k']) {
        const workload = report.workloads[key]!;
        for (const scenario of ['floor', 'naive', 'exec', 'warm1', 'warm8', 'cold'] as const) {
          expect(workload[scenario].n, `${key} ${scenario}`).toBeGreaterThan(0);
          expect(workload[scenario].errors, `${key} ${scenario}`).toBe(0);
          expect(workload[scenario].p50, `${key} ${scenario}`).toBeGreaterThan(0);
        }
        expect(report.ratios[key]!.naiveOverWarm).toBeGreaterThan(1);
      }
      expect(report.refill.rounds[0]!.containers).toBe(8);
      expect(report.refill.medianPerSecond).toBeGreaterThan(0);
      expect(report.gateway.rssPeakBytes).toBeGreaterThan(report.gateway.rssIdleBytes / 2);
      expect(report.gateway.soak.requests).toBeGreaterThan(0);
      expect(report.gateway.soak.errors).toBe(0);
      expect(report.gateway.soak.rssPeakBytes).toBeGreaterThan(0);
      expect(report.gateway.soakWithNodeDefaults.requests).toBeGreaterThan(0);
      expect(report.gateway.soakWithNodeDefaults.errors).toBe(0);
      // Side by side with the floor server, by wrk: every target answered, every answer right.
      expect(run.stdout).toContain('floor server, in a container');
      for (const key of ['trivial', 'json']) {
        const result = report.sideBySide[key]!;
        for (const target of ['floorHost', 'floorContainer', 'fnix'] as const) {
          for (const concurrency of ['c1', 'c8'] as const) {
            const rows = result[target][concurrency];
            expect(rows.requests, `${key} ${target} ${concurrency}`).toBeGreaterThan(0);
            expect(rows.errors, `${key} ${target} ${concurrency}`).toBe(0);
            expect(rows.p50, `${key} ${target} ${concurrency}`).toBeGreaterThan(0);
          }
          expect(result[target].cpuPerRequestUs.machine, `${key} ${target}`).toBeGreaterThan(0);
        }
        expect(result.fnix.cpuPerRequestUs.gateway, key).toBeGreaterThan(0);
      }
      // The large closure: python3 spawned on the host and in a container, and through fnix; echo with
      // busybox's closure and with python3's and imagemagick's; both cold starts.
      expect(run.stdout).toContain('a large closure, one request at a time');
      const { closure } = report;
      const { spawnHost, fnix, spawnContainer } = closure.python;
      const closureRows = { spawnHost, fnix, spawnContainer, coldBusybox: closure.cold.busybox, coldLarge: closure.cold.large };
      for (const [key, row] of Object.entries({ ...closureRows, echoBusybox: closure.echo.busybox, echoLarge: closure.echo.large })) {
        expect(row.errors, key).toBe(0);
        expect(row.p50, key).toBeGreaterThan(0);
      }
      for (const [key, row] of Object.entries(closureRows)) expect(row.n, key).toBeGreaterThan(1);
      expect(closure.python.cpuMs.host).toBeGreaterThan(0);
      expect(closure.python.cpuMs.container).toBeGreaterThan(0);
      expect(closure.closures.busybox.paths).toBeGreaterThan(0);
      expect(closure.closures.large.paths).toBeGreaterThan(closure.closures.busybox.paths * 10);
      expect(closure.storeMounts.containers).toBeGreaterThanOrEqual(3);
      expect(new Set(closure.storeMounts.storeMounts)).toEqual(new Set([1]));
      expect(closure.storeMounts.upperEntries).toBe(0);
      expect(report.targets.find((t) => t.name === 'store mounts of every warm container')?.met).toBe(true);
      expect(report.targets.map((t) => t.name)).toHaveLength(16);
      // Serve functions (issue 16): every row ran, with every answer right; the pushes served the new version.
      for (const key of ['python', 'node'] as const) {
        const r = report.serve[key];
        const rows = { perProcess: r.perProcess, fnixC1: r.fnix.c1, fnixC8: r.fnix.c8, hostC1: r.host.c1, hostC8: r.host.c8 };
        for (const [name, row] of Object.entries(key === 'python' ? { ...rows, perProcessDefault: r.perProcessDefault! } : rows)) {
          expect(row.requests, `${key} ${name}`).toBeGreaterThan(0);
          expect(row.errors, `${key} ${name}`).toBe(0);
        }
        expect(r.deploys.length, key).toBeGreaterThan(0);
        expect(
          r.deploys.every((d) => d.fromNewVersion),
          key,
        ).toBe(true);
      }
      expect(report.serve.targets).toHaveLength(5);
      // Nothing of the benchmark is left running.
      const left = await execa('podman', ['ps', '-aq', '--filter', 'label=io.fnix.bench']);
      expect(left.stdout.trim()).toBe('');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
