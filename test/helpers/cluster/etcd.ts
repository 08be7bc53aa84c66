/**
 * @module
 * A real etcd cluster for the lab: one member per etcd host (e1, e2, e3), each in its host's network
 * namespace, data under the lab folder, started, killed and restarted by pid. The leader is found from
 * each member's `/v3/maintenance/status` (its own id, and the leader's).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Daemon, ProcessRegistry } from './registry.ts';

/** What `/v3/maintenance/status` answers (etcd 3.4's JSON gateway: 64-bit ids as decimal strings). */
interface MemberStatus {
  header: { member_id: string };
  leader: string;
}

/** One member: its host, address and process. */
interface Member {
  name: string;
  ip: string;
  daemon: Daemon | undefined;
}

/** The lab's etcd members. */
export class EtcdCluster {
  readonly #registry: ProcessRegistry;
  readonly #labDir: string;
  readonly #runId: string;
  readonly #members: Member[];
  readonly #nsPath: (host: string) => string;

  constructor(registry: ProcessRegistry, labDir: string, runId: string, members: { name: string; ip: string }[], nsPath: (host: string) => string) {
    this.#registry = registry;
    this.#labDir = labDir;
    this.#runId = runId;
    this.#members = members.map((member) => ({ ...member, daemon: undefined }));
    this.#nsPath = nsPath;
  }

  /** The client URLs, for FNIX_CLUSTER_ETCD (joined with commas) or the etcd3 client's `hosts`. */
  endpoints(): string[] {
    return this.#members.map((member) => `http://${member.ip}:2379`);
  }

  /** The member's process, while it runs. */
  process(name: string): Daemon | undefined {
    const daemon = this.#member(name).daemon;
    return daemon?.running() ? daemon : undefined;
  }

  /** Starts every member and resolves once the cluster has a leader that every member agrees on. */
  async start(timeoutMs = 30_000): Promise<void> {
    for (const member of this.#members) await this.#start(member);
    await this.waitForLeader(timeoutMs);
  }

  async #start(member: Member): Promise<void> {
    const dataDir = join(this.#labDir, member.name);
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const cluster = this.#members.map((m) => `${m.name}=http://${m.ip}:2380`).join(',');
    // biome-ignore format: one flag and its value a line
    const argv = [
      'nsenter', `--net=${this.#nsPath(member.name)}`, '--', 'etcd',
      '--name', member.name,
      '--data-dir', dataDir,
      '--listen-client-urls', `http://${member.ip}:2379`,
      '--advertise-client-urls', `http://${member.ip}:2379`,
      '--listen-peer-urls', `http://${member.ip}:2380`,
      '--initial-advertise-peer-urls', `http://${member.ip}:2380`,
      '--initial-cluster', cluster,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', this.#runId,
      '--logger', 'zap',
    ];
    // No ETCD_* from the test's environment: every setting is a flag above.
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('ETCD_')));
    member.daemon = this.#registry.spawn(`etcd-${member.name}`, argv, { log: join(this.#labDir, `${member.name}.log`), env });
  }

  /** Sends `signal` to a member and waits for it to exit (SIGKILL by default). */
  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const member = this.#member(name);
    const daemon = member.daemon;
    if (!daemon?.running()) throw new Error(`cluster lab: etcd member ${name} is not running`);
    daemon.signal(signal);
    await daemon.exited;
    await daemon.stop(0);
  }

  /** Starts a stopped member again on its data folder and resolves once it answers as part of a cluster with a leader. */
  async restart(name: string, timeoutMs = 30_000): Promise<void> {
    const member = this.#member(name);
    if (member.daemon?.running()) throw new Error(`cluster lab: etcd member ${name} is still running; kill it first`);
    await this.#start(member);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const status = await this.#status(member);
      if (status && status.leader !== '0') return;
      if (!member.daemon?.running()) throw new Error(`cluster lab: etcd member ${name} exited at restart; see ${join(this.#labDir, `${name}.log`)}`);
      if (Date.now() > deadline) throw new Error(`cluster lab: etcd member ${name} has no leader ${timeoutMs} ms after its restart`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** The name of the member that leads now, as the running members report it; undefined while there is none. */
  async leader(): Promise<string | undefined> {
    const answers = await Promise.all(this.#members.map(async (member) => ({ member, status: await this.#status(member) })));
    const statuses = answers.flatMap(({ member, status }) => (status ? [{ member, status }] : []));
    const leaderId = statuses.find((s) => s.status.leader !== '0')?.status.leader;
    return statuses.find((s) => s.status.header.member_id === leaderId)?.member.name;
  }

  /** Resolves with the leader's name once every running member reports the same leader. */
  async waitForLeader(timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const running = this.#members.filter((member) => member.daemon?.running());
      const statuses = await Promise.all(running.map((member) => this.#status(member)));
      const leaders = new Set(statuses.map((status) => status?.leader ?? '0'));
      const [leaderId] = leaders;
      if (leaders.size === 1 && leaderId !== '0') {
        const leader = running.find((_, i) => statuses[i]!.header.member_id === leaderId);
        if (leader) return leader.name;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `cluster lab: etcd has no leader after ${timeoutMs} ms; see ${this.#members.map((m) => join(this.#labDir, `${m.name}.log`)).join(', ')}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Stops every member. */
  async stop(): Promise<void> {
    await Promise.all(this.#members.map((member) => member.daemon?.stop(3000)));
  }

  async #status(member: Member): Promise<MemberStatus | undefined> {
    if (!member.daemon?.running()) return undefined;
    try {
      const response = await fetch(`http://${member.ip}:2379/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(1000) });
      return response.ok ? ((await response.json()) as MemberStatus) : undefined;
    } catch {
      return undefined;
    }
  }

  #member(name: string): Member {
    const member = this.#members.find((m) => m.name === name);
    if (!member) throw new Error(`cluster lab: no etcd member ${name} (they are ${this.#members.map((m) => m.name).join(', ')})`);
    return member;
  }
}
