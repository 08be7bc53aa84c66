/**
 * @module
 * Where a run's CPU went: the machine's busy time (every CPU, from /proc/stat) and one process's own
 * (every thread, from /proc/<pid>/stat), in microseconds, so that a load's cost per request can be
 * split between the gateway and everything else (the agents, the commands, the kernel, wrk).
 */
import { readFile } from 'node:fs/promises';

/** A reading of the counters. */
export interface CpuReading {
  /** Busy time of the whole machine (user, nice, system, irq, softirq), µs. */
  machineUs: number;
  /** The process's user and system time, µs; 0 when there is no process. */
  processUs: number;
}

const TICK_US = 1e6 / 100; // USER_HZ is 100 on Linux

/** Reads the counters now, for process `pid` if given. */
export async function readCpu(pid?: number): Promise<CpuReading> {
  const stat = await readFile('/proc/stat', 'utf8');
  const fields = stat.slice(0, stat.indexOf('\n')).trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0] = fields;
  let processUs = 0;
  if (pid !== undefined) {
    const own = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The fields after the command's name, which is in parentheses and may hold spaces.
    const after = own.slice(own.lastIndexOf(')') + 2).split(' ');
    processUs = (Number(after[11]) + Number(after[12])) * TICK_US;
  }
  return { machineUs: (user + nice + system + irq + softirq) * TICK_US, processUs };
}

/** CPU per request between two readings: the machine's and the process's, µs. */
export function perRequest(before: CpuReading, after: CpuReading, requests: number): { machineUs: number; processUs: number } {
  const n = Math.max(1, requests);
  return { machineUs: (after.machineUs - before.machineUs) / n, processUs: (after.processUs - before.processUs) / n };
}
