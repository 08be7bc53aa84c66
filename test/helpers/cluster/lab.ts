/**
 * @module
 * The cluster lab: several fnix hosts on this one machine, for the many-host tests and benchmarks.
 * `ClusterLab.create()` (in `beforeAll`) makes, in order:
 * - a network (network.ts): hosts `s` (the store's export), `e1 e2 e3` (etcd), `n1 n2 n3` (fnix nodes),
 *   `lb` (HAProxy), each a network namespace on one bridge, reached from the test's namespace over a
 *   veth of the lab's own (`<prefix>.1`), never through the default route;
 * - the store (`shared`: the home store, hard links to the machine's, exported by an sshd in `s`; each
 *   node mounts it with sshfs under an overlay. `cache`: each node an overlay over the machine's store);
 * - a mount namespace per node, with its own Podman state (node-host.ts);
 * - three etcd members with a leader (etcd.ts).
 * Gateways (`startNode`) and HAProxy (`startHaproxy`) start when the test asks.
 * `destroy()` (in `afterAll`) stops all of it by pid, removes the nodes' containers, the namespaces, the
 * veth and the lab folder; it is safe to call twice and after a `create` that failed half-way (create
 * destroys what it made before it throws). Every pid is recorded in `<labdir>/lab.json` as it starts, so
 * the next lab's start sweeps what a crashed run left (sweep.ts).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { EtcdCluster } from './etcd.ts';
import { Haproxy } from './haproxy.ts';
import { LabNetwork, freeSubnet, removeNetwork } from './network.ts';
import { PROJECT_ROOT, type LabNode, startGateway } from './node.ts';
import { NodeHost, type StoreMode } from './node-host.ts';
import { type Daemon, LabRecordFile, ProcessRegistry, pidsInNamespaces, startTimeOf } from './registry.ts';
import { type CommandResult, type ShOptions, sh } from './shell.ts';
import { type HomeStore, seedHomeStore, startExport, writeExportConfig } from './store-export.ts';
import { LAB_ROOT, sweepLeftovers } from './sweep.ts';

/** What a lab is made of. */
export interface ClusterLabOptions {
  /** How the nodes get their store. @default 'shared' */
  store?: StoreMode;
  /** The fnix nodes. @default ['n1', 'n2', 'n3'] */
  nodes?: string[];
  /** The nodes that stand for builder: in shared mode they get the read-write export mount. @default every node */
  builders?: string[];
  /** The etcd members; none gives a lab without etcd. @default ['e1', 'e2', 'e3'] */
  etcd?: string[];
  /** Keep the lab folder (logs, stores) after destroy; also FNIX_LAB_KEEP=1. @default false */
  keep?: boolean;
}

/** Several fnix hosts on one machine; see the module's comment. */
export class ClusterLab {
  readonly runId: string;
  /** `/tmp/fnix-lab-<run id>`. */
  readonly dir: string;
  readonly storeMode: StoreMode;
  readonly network: LabNetwork;
  readonly etcd: EtcdCluster;
  readonly haproxy: Haproxy;
  /** The run ids of crashed labs that this one's start removed. */
  swept: string[] = [];
  /** Shared mode: the home store and how long seeding it took. */
  home: HomeStore | undefined;
  readonly #options: ClusterLabOptions;
  readonly #record: LabRecordFile;
  readonly #registry: ProcessRegistry;
  readonly #hosts = new Map<string, NodeHost>();
  readonly #gateways = new Map<string, LabNode>();
  readonly #builders: Set<string>;
  #sshd: Daemon | undefined;
  #destroyed: Promise<void> | undefined;

  private constructor(runId: string, prefix: string, options: ClusterLabOptions) {
    this.runId = runId;
    this.dir = join(LAB_ROOT, `fnix-lab-${runId}`);
    this.storeMode = options.store ?? 'shared';
    this.#options = options;
    const nodes = options.nodes ?? ['n1', 'n2', 'n3'];
    const members = options.etcd ?? ['e1', 'e2', 'e3'];
    this.#builders = new Set(options.builders ?? nodes);
    this.network = new LabNetwork(runId, prefix, ['s', ...members, ...nodes, 'lb']);
    this.#record = new LabRecordFile(join(this.dir, 'lab.json'), {
      runId,
      owner: { name: 'owner', pid: process.pid, start: startTimeOf(process.pid) ?? '?' },
      netns: this.network.namespaces(),
      rootLink: this.network.rootLink,
      nodeDirs: nodes.map((node) => join(this.dir, node)),
      mountNs: [],
      processes: [],
    });
    this.#registry = new ProcessRegistry(this.#record);
    for (const node of nodes) this.#hosts.set(node, new NodeHost(this.#registry, node, join(this.dir, node), this.network.nsPath(node)));
    const ips = members.map((name) => ({ name, ip: this.network.ip(name) }));
    this.etcd = new EtcdCluster(this.#registry, this.dir, runId, ips, (host) => this.network.nsPath(host));
    this.haproxy = new Haproxy(this.#registry, this.dir, this.network.nsPath('lb'));
  }

  /** Sweeps dead labs, then makes a new one; on any failure destroys what it made and throws. */
  static async create(options: ClusterLabOptions = {}): Promise<ClusterLab> {
    const swept = await sweepLeftovers();
    let runId = '';
    do runId = `fx${randomBytes(2).toString('hex')}`;
    while ((await readFile(join(LAB_ROOT, `fnix-lab-${runId}`, 'lab.json')).catch(() => undefined)) !== undefined);
    const prefix = await freeSubnet();
    const dir = join(LAB_ROOT, `fnix-lab-${runId}`);
    await mkdir(dir, { recursive: true });
    let lab: ClusterLab;
    try {
      lab = new ClusterLab(runId, prefix, options);
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
    lab.swept = swept;
    try {
      await lab.#start();
    } catch (error) {
      await lab.destroy();
      throw error;
    }
    return lab;
  }

  async #start(): Promise<void> {
    await this.network.create();
    const home = this.storeMode === 'shared' ? await this.#startExport() : undefined;
    const created = (node: string) => {
      const id = this.host(node).mountNs;
      if (id) this.#record.update((data) => data.mountNs.push(id));
    };
    await Promise.all(
      this.nodes().map((node) => this.host(node).create({ mode: this.storeMode, home, builder: this.#builders.has(node) }, () => created(node))),
    );
    if (this.etcd.endpoints().length > 0) await this.etcd.start();
  }

  async #startExport(): Promise<{ path: string; address: string; clientKey: string }> {
    this.home = await seedHomeStore(this.dir);
    const address = this.network.ip('s');
    const keys = await writeExportConfig(this.dir, address);
    this.#sshd = await startExport(this.#registry, this.dir, this.network.nsPath('s'), address, keys);
    return { path: this.home.path, address, clientKey: keys.clientKey };
  }

  /** The fnix nodes' names. */
  nodes(): string[] {
    return [...this.#hosts.keys()];
  }

  /** A node's host: its namespaces, mounts and Podman state. */
  host(node: string): NodeHost {
    const host = this.#hosts.get(node);
    if (!host) throw new Error(`cluster lab: no node ${node} (the nodes are ${this.nodes().join(', ')})`);
    return host;
  }

  /** A host's address (`root` for the test's own end of the lab's veth). */
  ip(host: string): string {
    return this.network.ip(host);
  }

  /** A node's gateway URL, `http://<ip>:8080`. */
  url(node: string): string {
    return `http://${this.ip(node)}:8080`;
  }

  /** The etcd client URLs. */
  etcdEndpoints(): string[] {
    return this.etcd.endpoints();
  }

  /** SIGKILLs (or `signal`s) an etcd member and waits for its exit. */
  killEtcd(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    return this.etcd.kill(name, signal);
  }

  /** Starts a stopped etcd member again; resolves once it sees a leader. */
  restartEtcd(name: string): Promise<void> {
    return this.etcd.restart(name);
  }

  /** The etcd member that leads now, if any. */
  etcdLeader(): Promise<string | undefined> {
    return this.etcd.leader();
  }

  /** The store settings of `node`: FNIX_STORE_MODE, and FNIX_STORE_EXPORT on a builder in shared mode. */
  storeEnv(node: string): Record<string, string> {
    const env: Record<string, string> = { FNIX_STORE_MODE: this.storeMode };
    if (this.storeMode === 'shared' && this.#builders.has(node)) env['FNIX_STORE_EXPORT'] = this.host(node).exportDir;
    return env;
  }

  /**
   * Runs `argv` to its end in `host`'s namespaces (a node's network and mount namespaces; another host's
   * network namespace), from the project's root.
   */
  run(host: string, argv: readonly string[], options: ShOptions = {}): Promise<CommandResult> {
    const node = this.#hosts.get(host);
    if (node) return node.run(argv, { cwd: PROJECT_ROOT, ...options });
    return sh(['nsenter', `--net=${this.network.nsPath(host)}`, '--', ...argv], { cwd: PROJECT_ROOT, ...options });
  }

  /** Starts a long-lived `argv` in `host`'s namespaces, recorded and stopped with the lab; output to `<labdir>/<host>-<name>.log`. */
  spawn(host: string, name: string, argv: readonly string[]): Daemon {
    const node = this.#hosts.get(host);
    const prefix = node ? node.nsenter(PROJECT_ROOT) : ['nsenter', `--net=${this.network.nsPath(host)}`, '--'];
    return this.#registry.spawn(`${host}-${name}`, [...prefix, ...argv], { log: join(this.dir, `${host}-${name}.log`), cwd: PROJECT_ROOT });
  }

  /** Cuts `host` off from each of `from`, both ways (blackhole routes). */
  partition(host: string, from: readonly string[]): Promise<void> {
    return this.network.partition(host, from);
  }

  /** Undoes a partition of `host` from `from` (from everything it is cut off from, by default). */
  heal(host: string, from?: readonly string[]): Promise<void> {
    return this.network.heal(host, from);
  }

  /** Starts node `node`'s gateway with `env` over the lab's settings (state, address, port 8080, name, URL, pool of 2). */
  startNode(node: string, env: Record<string, string> = {}): LabNode {
    const running = this.#gateways.get(node);
    if (running?.process.running()) throw new Error(`cluster lab: node ${node}'s gateway runs already (pid ${running.pid}); stop or kill it first`);
    const gateway = startGateway(this.#registry, this.host(node), this.dir, this.ip(node), env);
    this.#gateways.set(node, gateway);
    return gateway;
  }

  /** The gateway started last on `node`, if any. */
  gateway(node: string): LabNode | undefined {
    return this.#gateways.get(node);
  }

  /** Removes every container of `node` (after its gateway was killed, say), in its own Podman. */
  async removeContainers(node: string): Promise<void> {
    await this.host(node).run(['podman', 'rm', '--all', '--force', '--time', '0'], { timeoutMs: 60_000 });
  }

  /** Starts HAProxy in `lb` on `config`. */
  startHaproxy(config: string): Promise<Daemon> {
    return this.haproxy.start(config);
  }

  /** Reloads HAProxy on `config`. */
  reloadHaproxy(config: string): Promise<void> {
    return this.haproxy.reload(config);
  }

  /** The last `bytes` of every log of the lab, labelled: for a test to print when it fails. */
  async logTails(bytes = 4000): Promise<string> {
    const logs = (await readdir(this.dir).catch(() => [] as string[])).filter((name) => name.endsWith('.log')).sort();
    const parts: string[] = [];
    for (const name of logs) {
      const text = await readFile(join(this.dir, name), 'utf8').catch(() => '');
      if (text.trim()) parts.push(`===== ${name} =====\n${text.slice(-bytes)}`);
    }
    return parts.join('\n');
  }

  /** Stops and removes everything; see the module's comment. */
  destroy(): Promise<void> {
    this.#destroyed ??= this.#destroy();
    return this.#destroyed;
  }

  /** The same as {@link destroy}. */
  cleanup(): Promise<void> {
    return this.destroy();
  }

  async #destroy(): Promise<void> {
    const errors: unknown[] = [];
    const attempt = async (what: () => Promise<unknown>) => {
      try {
        await what();
      } catch (error) {
        errors.push(error);
      }
    };
    // Gateways first, gracefully (they remove their containers), then each node's leftovers.
    await attempt(() => Promise.all([...this.#gateways.values()].map((gateway) => gateway.stop(10_000))));
    await attempt(() => Promise.all([...this.#hosts.values()].map((host) => host.destroy())));
    await attempt(() => this.haproxy.stop());
    await attempt(() => this.etcd.stop());
    await attempt(async () => this.#sshd?.stop(2000));
    await attempt(() => this.#registry.stopAll(2000));
    // Anything still in one of the lab's network namespaces, whoever started it.
    await attempt(async () => {
      for (let round = 0; round < 50; round++) {
        const left = pidsInNamespaces(this.network.namespaceIds(), new Set());
        if (left.length === 0) return;
        for (const pid of left) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone
          }
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error('cluster lab: processes stay in the lab namespaces after SIGKILL');
    });
    await attempt(() => removeNetwork(this.network.namespaces(), this.network.rootLink));
    const keep = this.#options.keep || process.env['FNIX_LAB_KEEP'] === '1';
    if (!keep) await attempt(() => rm(this.dir, { recursive: true, force: true }));
    if (errors.length > 0) throw new AggregateError(errors, `cluster lab ${this.runId}: destroy failed: ${errors.map(String).join('; ')}`);
  }
}
