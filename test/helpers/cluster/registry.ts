/**
 * @module
 * Every long-lived process of a cluster lab, by pid. A process is started here in a process group of its
 * own, written at once to the lab's record (`<labdir>/lab.json`, so that a later run can sweep what a
 * crashed one left, see sweep.ts), and stopped here: SIGTERM to its group, SIGKILL after a grace.
 * A pid is always kept with its start time (/proc/<pid>/stat), so that a pid the kernel has since given
 * to another process is never signalled.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, renameSync, writeFileSync } from 'node:fs';

/** A process as the record keeps it. */
export interface RecordedProcess {
  name: string;
  pid: number;
  /** Its start time in clock ticks since boot, field 22 of /proc/<pid>/stat. */
  start: string;
}

/** What `<labdir>/lab.json` holds: enough for a later run to remove all of it once its owner is dead. */
export interface LabRecord {
  runId: string;
  /** The test process that made the lab: while it lives, no sweep touches the lab. */
  owner: RecordedProcess;
  /** Network namespaces made (or about to be): `ip netns` names. */
  netns: string[];
  /** The veth in the root namespace. */
  rootLink: string;
  /** Node folders whose Podman state (containers/lib) may hold containers. */
  nodeDirs: string[];
  /** The nodes' mount namespaces (`mnt:[inode]`), where conmon and sshfs run. */
  mountNs: string[];
  processes: RecordedProcess[];
}

/** The record of a lab, written to disk at every change. */
export class LabRecordFile {
  readonly path: string;
  readonly data: LabRecord;

  constructor(path: string, data: LabRecord) {
    this.path = path;
    this.data = data;
    this.save();
  }

  /** Changes the record and writes it (a rename, so that a reader never sees half of it). */
  update(change: (data: LabRecord) => void): void {
    change(this.data);
    this.save();
  }

  private save(): void {
    writeFileSync(`${this.path}.new`, JSON.stringify(this.data, null, 2));
    renameSync(`${this.path}.new`, this.path);
  }
}

/** The start time of `pid`, or undefined when there is no such process. */
export function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The name (field 2) is in parentheses and may hold spaces: count from after its closing one.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Whether the process recorded as `recorded` is still the one running under its pid. */
export function stillRunning(recorded: Pick<RecordedProcess, 'pid' | 'start'>): boolean {
  return startTimeOf(recorded.pid) === recorded.start && !isZombie(recorded.pid);
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/** Sends `signal` to `pid`'s process group and to `pid`; a process already gone is no error. */
export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, signal);
    } catch {
      // gone already
    }
  }
}

/** A long-lived process of the lab. */
export interface Daemon extends RecordedProcess {
  child: ChildProcess;
  /** Settles when it exits: its exit code, or the signal that ended it. */
  exited: Promise<number | NodeJS.Signals | null>;
  running(): boolean;
  /** Sends `signal` to its process group. */
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM to its group, SIGKILL after `graceMs` if it has not exited; resolves once it has. */
  stop(graceMs?: number): Promise<void>;
}

/** Options of {@link ProcessRegistry.spawn}. */
export interface SpawnOptions {
  /** The file its stdout and stderr are appended to. */
  log: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** The lab's long-lived processes. */
export class ProcessRegistry {
  readonly #record: LabRecordFile;
  readonly #daemons = new Set<Daemon>();

  constructor(record: LabRecordFile) {
    this.#record = record;
  }

  /** Starts `argv` in a process group of its own, output to `options.log`, and records it. */
  spawn(name: string, argv: readonly string[], options: SpawnOptions): Daemon {
    const log = openSync(options.log, 'a');
    let child: ChildProcess;
    try {
      child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', log, log], env: options.env ?? process.env, cwd: options.cwd });
    } finally {
      closeSync(log);
    }
    // A spawn that fails (no such binary) settles as an exit, not an uncaught 'error'.
    const exited = new Promise<number | NodeJS.Signals | null>((resolve) => {
      child.once('exit', (code, signal) => resolve(code ?? signal));
      child.once('error', () => resolve(null));
    });
    if (child.pid === undefined) throw new Error(`cluster lab: could not start ${name} (\`${argv.join(' ')}\`); see ${options.log}`);
    const pid = child.pid;
    const daemon: Daemon = {
      name,
      pid,
      start: startTimeOf(pid) ?? '?',
      child,
      exited,
      running: () => child.exitCode === null && child.signalCode === null,
      signal: (signal) => {
        if (daemon.running()) signalGroup(pid, signal);
      },
      stop: async (graceMs = 5000) => {
        if (daemon.running()) {
          signalGroup(pid, 'SIGTERM');
          const timer = setTimeout(() => signalGroup(pid, 'SIGKILL'), graceMs);
          await exited;
          clearTimeout(timer);
        }
        // Whatever it started in its group and left behind (sshfs's ssh, a gateway's podman calls).
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // none
        }
        this.#forget(daemon);
      },
    };
    this.#daemons.add(daemon);
    this.#record.update((data) => data.processes.push({ name, pid, start: daemon.start }));
    void exited.then(() => {
      if (!daemon.running()) this.#forget(daemon);
    });
    return daemon;
  }

  /** The processes started and not yet stopped. */
  list(): Daemon[] {
    return [...this.#daemons];
  }

  /** Stops every process it started, all at once. */
  async stopAll(graceMs = 3000): Promise<void> {
    await Promise.all(this.list().map((daemon) => daemon.stop(graceMs)));
  }

  #forget(daemon: Daemon): void {
    if (!this.#daemons.delete(daemon)) return;
    this.#record.update((data) => {
      data.processes = data.processes.filter((p) => !(p.pid === daemon.pid && p.start === daemon.start));
    });
  }
}

/** The namespace of `pid` of `kind` (`net`, `mnt`), as `net:[4026532392]`, or undefined. */
export function namespaceOf(pid: number | 'self', kind: 'net' | 'mnt'): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/${kind}`);
  } catch {
    return undefined;
  }
}

/** Pids of every process (but this one) in one of the network namespaces `net` or mount namespaces `mnt`. */
export function pidsInNamespaces(net: ReadonlySet<string>, mnt: ReadonlySet<string>): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    const inNet = net.size > 0 && net.has(namespaceOf(pid, 'net') ?? '');
    const inMnt = mnt.size > 0 && mnt.has(namespaceOf(pid, 'mnt') ?? '');
    if ((inNet || inMnt) && !isZombie(pid)) found.push(pid);
  }
  return found;
}

/** Pids of the processes of the Podman containers `ids` (from their cgroups: `libpod-<id>`). */
export function pidsOfContainers(ids: readonly string[]): number[] {
  if (ids.length === 0) return [];
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let cgroup = '';
    try {
      cgroup = readFileSync(`/proc/${entry}/cgroup`, 'utf8');
    } catch {
      continue;
    }
    const match = /libpod-(?:conmon-)?([0-9a-f]{64})/.exec(cgroup);
    if (match && ids.includes(match[1]!)) found.push(Number(entry));
  }
  return found;
}
