/**
 * @module
 * A large closure on the warm path. fnix's containers read every package from the host's /nix/store
 * through one overlay mount, so nothing of a function's closure is copied, scanned or mounted when it is
 * invoked; these rows measure that, one request at a time, in rounds taken in turns:
 * - python3 -c 'print(1)' spawned on the host by bench/floor/spawn-floor.c, with the PATH and
 *   environment fnix would give it (the interpreter's own start: the floor), and the same through fnix
 *   warm (a function declaring python3 and imagemagick), request by request in turns, by the same C
 *   program;
 * - the same spawned in a container confined as fnix's are, which tells what the container itself does
 *   to the interpreter's start from what fnix's path adds;
 * - `echo hello` through two functions that differ in their closure only: busybox, and busybox with
 *   python3 and imagemagick. Were anything done per invocation in proportion to the closure, the second
 *   would be slower.
 */
import { mkdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { compileStatic } from '../runtime/compile-c.ts';
import { StorePathSizes } from '../runtime/nix/closure.ts';
import { packageEnvironment } from '../runtime/nix/environment.ts';
import type { BenchHost } from './host.ts';
import { summarize, type Summary } from './stats.ts';
import { combineRounds, runWrk, type WrkLoad, type WrkResult } from './wrk.ts';

const SOURCE = fileURLToPath(new URL('./floor/spawn-floor.c', import.meta.url));

/** The interpreter's command, as the `python` function in bench/functions runs it. */
export const PYTHON_COMMAND = ['python3', '-c', 'print(1)'];
/** What {@link PYTHON_COMMAND} prints. */
export const PYTHON_OUTPUT = Buffer.from('1\n');
/** The `python` function's packages; its cold start is compared with the busybox function's (bench/run.ts). */
export const LARGE_PACKAGES = ['python3', 'imagemagick'];

/** A closure's size: its store paths and their NAR bytes. */
export interface ClosureSize {
  packages: string[];
  paths: number;
  bytes: number;
}

/** The warm rows, one request at a time. */
export interface ClosureWarmResult {
  closures: { busybox: ClosureSize; large: ClosureSize };
  /**
   * python3 -c 'print(1)': spawned on the host (the floor) and through fnix warm, request by request in
   * turns; spawned in a container confined as fnix's, in rounds between them. Every sample of every
   * round counts. `cpuMs` is the command's median CPU time per run, on the host and in the container.
   */
  python: { spawnHost: Summary; fnix: Summary; spawnContainer: Summary; cpuMs: { host: number; container: number } };
  /** fnix warm, `echo hello`, by wrk: with busybox's closure, and with busybox's, python3's and imagemagick's. */
  echo: { busybox: WrkResult; large: WrkResult };
}

/**
 * How much: rounds of each row, each row's time in a round, and the warm-up of each fnix function. Many
 * short rounds rather than a few long ones: the machine's speed comes and goes within seconds.
 */
export interface ClosurePlan {
  rounds: number;
  c1Ms: number;
  warmupMs: number;
}

type Row = 'paired' | 'spawnContainer' | 'echoBusybox' | 'echoLarge';

/** One row's samples so far: latencies and the command's CPU times, in ms. */
interface Samples {
  ms: number[];
  cpuMs: number[];
  errors: number;
}

/** Measures the rows against the warm gateway at `gatewayUrl`; `stateDir` holds the compiled spawn-floor. */
export async function measureClosure(
  host: BenchHost,
  stateDir: string,
  gatewayUrl: string,
  plan: ClosurePlan,
  say: (line: string) => void,
): Promise<ClosureWarmResult> {
  const binary = await compileStatic(SOURCE, stateDir, 'spawn-floor');
  const sizes = new StorePathSizes();
  const busybox = await host.resolver.resolve(['busybox']);
  const large = await host.resolver.resolve(LARGE_PACKAGES);
  const largeEcho = await host.resolver.resolve(['busybox', ...LARGE_PACKAGES]);
  const size = async (packages: string[], closure: string[]): Promise<ClosureSize> => {
    const measured = await sizes.measure(closure);
    return { packages, paths: measured.count, bytes: measured.totalBytes };
  };
  // The environment fnix gives the command (runtime/runner.ts), less the request's CGI variables.
  const env = { ...(await packageEnvironment(large.closure)), PATH: large.binPath, HOME: '/tmp', TMPDIR: '/tmp' };
  const cwd = join(stateDir, 'cwd');
  await mkdir(cwd, { recursive: true });
  const port = new URL(gatewayUrl).port;
  const echoLoads: Record<'echoBusybox' | 'echoLarge', WrkLoad> = {
    echoBusybox: { url: `${gatewayUrl}/fn/line`, expected: Buffer.from('hello\n') },
    echoLarge: { url: `${gatewayUrl}/fn/line-closure`, expected: Buffer.from('hello\n') },
  };
  const taken = { spawnHost: emptySamples(), fnix: emptySamples(), spawnContainer: emptySamples() };
  const echo = { echoBusybox: [] as WrkResult[], echoLarge: [] as WrkResult[] };
  const measureRow = async (row: Row): Promise<void> => {
    if (row === 'paired') {
      const { stdout } = await execa(binary, [String(plan.c1Ms), PYTHON_OUTPUT.toString(), '--get', port, '/fn/python', '--', ...PYTHON_COMMAND], {
        env,
        extendEnv: false,
        cwd,
      });
      readSamples(stdout, { spawn: taken.spawnHost, get: taken.fnix });
    } else if (row === 'spawnContainer') {
      readSamples(await spawnInContainer(host, binary, plan.c1Ms, env), { spawn: taken.spawnContainer });
    } else {
      echo[row].push(await runWrk(echoLoads[row], 1, plan.c1Ms));
    }
  };
  // Warm-up: each function's container specialised, its connection open, the command's files in the page cache.
  await execa(binary, [String(plan.warmupMs), PYTHON_OUTPUT.toString(), '--get', port, '/fn/python', '--', ...PYTHON_COMMAND], { env, extendEnv: false, cwd });
  for (const load of Object.values(echoLoads)) await runWrk(load, 1, plan.warmupMs);
  const rows: Row[] = ['paired', 'spawnContainer', 'echoBusybox', 'echoLarge'];
  for (let round = 0; round < plan.rounds; round += 1) {
    // Each round starts one row further on, so that no row always follows the same one (a container's
    // removal after spawnContainer, say, runs on into the next row).
    for (const row of [...rows.slice(round % rows.length), ...rows.slice(0, round % rows.length)]) {
      say(`large closure: round ${round + 1} of ${plan.rounds}, ${row}`);
      await measureRow(row);
    }
  }
  return {
    closures: { busybox: await size(['busybox'], busybox.closure), large: await size(['busybox', ...LARGE_PACKAGES], largeEcho.closure) },
    python: {
      spawnHost: summarizeSamples(taken.spawnHost),
      fnix: summarizeSamples(taken.fnix),
      spawnContainer: summarizeSamples(taken.spawnContainer),
      cpuMs: { host: median(taken.spawnHost.cpuMs), container: median(taken.spawnContainer.cpuMs) },
    },
    echo: { busybox: combineRounds(echo.echoBusybox), large: combineRounds(echo.echoLarge) },
  };
}

/** spawn-floor in a container confined as fnix's (bench/host.ts), for `ms`, with `env`; returns its output. */
async function spawnInContainer(host: BenchHost, binary: string, ms: number, env: Record<string, string>): Promise<string> {
  const envArgs = Object.entries(env).flatMap(([key, value]) => ['--env', `${key}=${value}`]);
  // biome-ignore format: one option and its value per line
  const { stdout } = await host.podman.exec([
    'run', '--rm',
    ...host.containerArgs,
    ...envArgs,
    '--workdir', '/fn',
    '--volume', `${dirname(binary)}:/floor:ro`,
    '--rootfs', host.rootfs,
    `/floor/${basename(binary)}`, String(ms), PYTHON_OUTPUT.toString(), '--', ...PYTHON_COMMAND,
  ]);
  return String(stdout);
}

function emptySamples(): Samples {
  return { ms: [], cpuMs: [], errors: 0 };
}

/** Adds spawn-floor's lines (`spawn <µs> <cpu µs> ok|bad`, `get <µs> ok|bad`) to the samples of their kind. */
function readSamples(stdout: string, into: { spawn: Samples; get?: Samples }): void {
  for (const line of stdout.split('\n').filter(Boolean)) {
    const [kind, us, ...rest] = line.split(' ');
    const samples = kind === 'get' ? into.get : into.spawn;
    if (!samples) throw new Error(`spawn-floor printed an unexpected line: ${line}`);
    if (rest.at(-1) !== 'ok') samples.errors += 1;
    else samples.ms.push(Number(us) / 1000);
    if (kind === 'spawn') samples.cpuMs.push(Number(rest[0]) / 1000);
  }
}

/** A row's figures from every sample of every round; its rate is over the time spent in its own samples. */
function summarizeSamples(samples: Samples): Summary {
  return summarize(
    samples.ms,
    samples.ms.reduce((sum, ms) => sum + ms, 0),
    samples.errors,
  );
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? Number.NaN : sorted[Math.floor(sorted.length / 2)]!;
}
