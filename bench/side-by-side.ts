/**
 * @module
 * fnix against the floor of its model, side by side: bench/floor/floor-server.c serving the same
 * command with a fork per request, on the host and in a container confined as fnix's are, and fnix's
 * warm path, each loaded by wrk (bench/wrk.ts) at concurrency 1 and 8, in rounds taken in turns so
 * that what the machine does meanwhile weighs on each alike. The ratios of fnix to the floor in a
 * container are the warm-path targets (bench/report.ts).
 */
import { cpus } from 'node:os';
import { buildFloorServer, startFloorInContainer, startFloorOnHost, type FloorServer } from './floor.ts';
import { perRequest, readCpu } from './cpu-time.ts';
import { freePort } from './gateway-process.ts';
import type { BenchHost } from './host.ts';
import { combineRounds, runWrk, type WrkLoad, type WrkResult } from './wrk.ts';

/** One command, as fnix runs it (a function in bench/functions) and as the floor runs it. */
export interface SideBySideWorkload {
  key: string;
  /** The function in bench/functions. */
  fn: string;
  /** The same command for the floor server: store paths of the same packages. */
  command: (host: BenchHost) => string[];
  body: Buffer | undefined;
  expected: Buffer;
}

/** Concurrency 1 and 8, for one target. */
export interface TargetRows {
  c1: WrkResult;
  c8: WrkResult;
  /**
   * CPU per request at concurrency 8, µs: the whole machine's (wrk's included), and the gateway's own
   * (fnix only; the rest is the agents, the commands, the kernel and wrk).
   */
  cpuPerRequestUs: { machine: number; gateway: number | undefined };
}

/** One workload's three targets. */
export interface SideBySideResult {
  floorHost: TargetRows;
  floorContainer: TargetRows;
  fnix: TargetRows;
}

/** How much load: rounds of each concurrency per target, and their lengths. */
export interface SideBySidePlan {
  rounds: number;
  c1Ms: number;
  c8Ms: number;
  warmupMs: number;
}

/** Measures every workload against fnix's gateway at `gatewayUrl`; `stateDir` holds the compiled floor server. */
export async function measureSideBySide(
  host: BenchHost,
  stateDir: string,
  gateway: { url: string; pid: number },
  workloads: SideBySideWorkload[],
  plan: SideBySidePlan,
  say: (line: string) => void,
): Promise<Record<string, SideBySideResult>> {
  const binary = await buildFloorServer(stateDir);
  const results: Record<string, SideBySideResult> = {};
  for (const w of workloads) {
    const command = w.command(host);
    const servers: FloorServer[] = [];
    try {
      const onHost = await startFloorOnHost(binary, command, await freePort());
      servers.push(onHost);
      // Its quota is the host's CPUs: fnix's 8 connections have a container (and a quota of 1) each.
      const inContainer = await startFloorInContainer(host, binary, command, await freePort(), { cpus: cpus().length });
      servers.push(inContainer);
      const targets: Array<[keyof SideBySideResult, string]> = [
        ['floorHost', onHost.url],
        ['floorContainer', inContainer.url],
        ['fnix', `${gateway.url}/fn/${w.fn}`],
      ];
      const loads = targets.map(([key, url]): [keyof SideBySideResult, WrkLoad] => [key, { url, expected: w.expected, body: w.body }]);
      for (const [, load] of loads) await runWrk(load, 8, plan.warmupMs);
      const rounds = Object.fromEntries(targets.map(([key]) => [key, { c1: [] as WrkResult[], c8: [] as WrkResult[], machineUs: 0, gatewayUs: 0 }])) as Record<
        keyof SideBySideResult,
        { c1: WrkResult[]; c8: WrkResult[]; machineUs: number; gatewayUs: number }
      >;
      for (let round = 0; round < plan.rounds; round += 1) {
        for (const [key, load] of loads) {
          say(`${w.key}: side by side, round ${round + 1} of ${plan.rounds}, ${key}`);
          rounds[key].c1.push(await runWrk(load, 1, plan.c1Ms));
          const before = await readCpu(gateway.pid);
          const c8 = await runWrk(load, 8, plan.c8Ms);
          const cost = perRequest(before, await readCpu(gateway.pid), c8.requests);
          rounds[key].c8.push(c8);
          rounds[key].machineUs += cost.machineUs * c8.requests;
          rounds[key].gatewayUs += cost.processUs * c8.requests;
        }
      }
      const rows = (key: keyof SideBySideResult): TargetRows => {
        const c8 = combineRounds(rounds[key].c8);
        const n = Math.max(1, c8.requests);
        return {
          c1: combineRounds(rounds[key].c1),
          c8,
          cpuPerRequestUs: { machine: rounds[key].machineUs / n, gateway: key === 'fnix' ? rounds[key].gatewayUs / n : undefined },
        };
      };
      results[w.key] = { floorHost: rows('floorHost'), floorContainer: rows('floorContainer'), fnix: rows('fnix') };
    } finally {
      for (const server of servers) await server.stop();
    }
  }
  return results;
}
