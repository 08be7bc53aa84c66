/**
 * @module
 * One fnix node's host: a long-lived mount namespace inside the node's network namespace, held by a
 * `sleep` (`nsenter --net=… unshare --mount --propagation private sleep infinity`), in which every later
 * command of the node runs (`nsenter --net=… --mount=/proc/<holder>/ns/mnt`). In it:
 * - Podman's state is the node's own: folders of the node's bound over /var/lib/containers,
 *   /run/containers and /run/libpod, and a tmpfs of its own on /dev/shm, made once for the node's life
 *   (Podman's lock segment, /dev/shm/libpod_lock, lives there: each node's locks are its own, as on a
 *   host of its own, rather than drawn from the machine's segment that other tests' Podman uses).
 * - The store, by mode: `shared`, an overlay on /nix/store whose lower layer is a read-only sshfs mount of
 *   the home store (plus a read-write sshfs mount of it at `<node>/export` on nodes that stand for
 *   builder); `cache`, an overlay over the machine's own /nix/store. Either way an overlay on
 *   /nix/var/nix over the machine's, so each node has a Nix database of its own.
 * Upper and work folders are on disk, under the node's folder: what a node builds is kept out of memory,
 * which the machine's gateways and containers share.
 * Podman under `ip netns exec` fails here (it remounts /sys), hence nsenter.
 */
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Daemon, namespaceOf, type ProcessRegistry, pidsInNamespaces, pidsOfContainers } from './registry.ts';
import { type CommandResult, type ShOptions, sh } from './shell.ts';

/** How a node gets its store. */
export type StoreMode = 'shared' | 'cache';

/**
 * The sshfs options of every store mount (besides ro/rw, the key and the host-key settings). Measured
 * here (see the cluster lab's report): without ServerAlive* a cut of any length is survived (reads block,
 * then resume when TCP retransmits), but a dead server hangs reads for TCP's whole timeout; with
 * `ServerAliveInterval=5,ServerAliveCountMax=3`, a cut under 15 s is survived the same way, a longer one
 * fails the reads in flight with EIO, and `reconnect` logs in again at the next access (about 0.7 s).
 * Without `reconnect`, sshfs exits at the first drop and the overlay above it is dead for good.
 * `no_contain_symlinks`: Debian's sshfs 3.7.3-1.2~deb12u1 rejects (EPERM) every symlink whose target is
 * absolute or holds `..` by default; the store is full of both (python3's bin/python3 is
 * `../usr/bin/python3`), and they resolve in the node's own /nix/store, as over NFS. The export is the lab's own.
 */
export const SSHFS_OPTIONS = ['allow_other', 'reconnect', 'ServerAliveInterval=5', 'ServerAliveCountMax=3', 'no_contain_symlinks'];

/** Where the node's store comes from. */
export interface StoreSource {
  mode: StoreMode;
  /** shared: the home store's path on `s`, its address and the client key. */
  home?: { path: string; address: string; clientKey: string };
  /** shared: whether to mount the export read-write at `<node>/export` (a node that stands for builder). */
  builder?: boolean;
}

/** A mount as /proc/<pid>/mountinfo lists it. */
export interface MountEntry {
  target: string;
  fstype: string;
  source: string;
  /** The mount's own options (`rw,relatime`). */
  options: string;
  /** The filesystem's (`lowerdir=…,upperdir=…` for an overlay). */
  superOptions: string;
}

/** One node's namespaces, Podman state and store. */
export class NodeHost {
  readonly name: string;
  /** `<labdir>/<node>`. */
  readonly dir: string;
  readonly netnsPath: string;
  readonly #registry: ProcessRegistry;
  #holder: Daemon | undefined;
  #mountNs: string | undefined;
  readonly #sshfs: Daemon[] = [];

  constructor(registry: ProcessRegistry, name: string, dir: string, netnsPath: string) {
    this.#registry = registry;
    this.name = name;
    this.dir = dir;
    this.netnsPath = netnsPath;
  }

  /** The read-only sshfs mount of the home store (shared mode): the overlay's lower layer. */
  get lower(): string {
    return join(this.dir, 'lower');
  }

  /** The read-write sshfs mount of the home store (shared mode, builders): FNIX_STORE_EXPORT. */
  get exportDir(): string {
    return join(this.dir, 'export');
  }

  /** The mount namespace's identity (`mnt:[inode]`), once made. */
  get mountNs(): string | undefined {
    return this.#mountNs;
  }

  /** The pid of the `sleep` that holds the mount namespace. */
  get holderPid(): number | undefined {
    return this.#holder?.pid;
  }

  /** `nsenter` into the node's network and mount namespaces, working in `cwd` (/ by default), then `--`. */
  nsenter(cwd = '/'): string[] {
    if (!this.#holder) throw new Error(`cluster lab: node ${this.name} has no mount namespace yet`);
    return ['nsenter', `--net=${this.netnsPath}`, `--mount=/proc/${this.#holder.pid}/ns/mnt`, `--wd=${cwd}`, '--'];
  }

  /** Runs `argv` in the node's namespaces. */
  run(argv: readonly string[], options: ShOptions & { cwd?: string } = {}): Promise<CommandResult> {
    const { cwd, ...rest } = options;
    return sh([...this.nsenter(cwd), ...argv], rest);
  }

  /** The mounts of the node's mount namespace. */
  async mounts(): Promise<MountEntry[]> {
    if (!this.#holder) return [];
    const text = await readFile(`/proc/${this.#holder.pid}/mountinfo`, 'utf8');
    return text
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const fields = line.split(' ');
        const dash = fields.indexOf('-');
        return {
          target: unescapeMount(fields[4]!),
          options: fields[5]!,
          fstype: fields[dash + 1]!,
          source: fields[dash + 2]!,
          superOptions: fields[dash + 3] ?? '',
        };
      });
  }

  /** The mount namespace (`onNamespace` is told once it exists), Podman's folders and the store. */
  async create(store: StoreSource, onNamespace: () => void = () => {}): Promise<void> {
    for (const sub of [
      'containers/lib',
      'containers/run',
      'containers/libpod',
      'upper/store',
      'work/store',
      'upper/var',
      'work/var',
      'lower',
      'export',
      'state',
    ]) {
      await mkdir(join(this.dir, sub), { recursive: true });
    }
    const holder = this.#registry.spawn(
      `${this.name}-mntns`,
      ['nsenter', `--net=${this.netnsPath}`, 'unshare', '--mount', '--propagation', 'private', 'sleep', 'infinity'],
      {
        log: join(this.dir, 'holder.log'),
      },
    );
    this.#holder = holder;
    const ours = namespaceOf('self', 'mnt');
    const deadline = Date.now() + 10_000;
    // Once unshare has exec'd sleep, the holder's mount namespace is the new one.
    while (namespaceOf(holder.pid, 'mnt') === ours || (await readFile(`/proc/${holder.pid}/comm`, 'utf8').catch(() => '')).trim() !== 'sleep') {
      if (!holder.running() || Date.now() > deadline)
        throw new Error(`cluster lab: node ${this.name}'s mount namespace did not come up; see ${join(this.dir, 'holder.log')}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    this.#mountNs = namespaceOf(holder.pid, 'mnt');
    onNamespace();
    const d = this.dir;
    // biome-ignore format: one command a line
    await this.run(['sh', '-ec', [
      'mkdir -p /var/lib/containers /run/containers /run/libpod',
      `mount --bind ${d}/containers/lib /var/lib/containers`,
      `mount --bind ${d}/containers/run /run/containers`,
      `mount --bind ${d}/containers/libpod /run/libpod`,
      'mount -t tmpfs -o size=64m,mode=1777,nosuid,nodev tmpfs /dev/shm',
    ].join('\n')]);
    if (store.mode === 'shared') await this.#mountShared(store);
    else await this.#overlay('/nix/store', '/nix/store', 'store');
    await this.#overlay('/nix/var/nix', '/nix/var/nix', 'var');
    await this.#check(store);
  }

  async #mountShared(store: StoreSource): Promise<void> {
    if (!store.home) throw new Error('cluster lab: a shared store needs the home store and its address');
    await this.#sshfsMount(store.home, this.lower, 'ro');
    if (store.builder) await this.#sshfsMount(store.home, this.exportDir, 'rw');
    await this.#overlay(this.lower, '/nix/store', 'store');
  }

  async #sshfsMount(home: NonNullable<StoreSource['home']>, target: string, access: 'ro' | 'rw'): Promise<void> {
    // biome-ignore format: the options, one group a line
    const options = [
      access, ...SSHFS_OPTIONS,
      `IdentityFile=${home.clientKey}`, 'IdentitiesOnly=yes', 'BatchMode=yes',
      'StrictHostKeyChecking=no', 'UserKnownHostsFile=/dev/null', 'LogLevel=ERROR',
    ].join(',');
    const name = `${this.name}-sshfs-${access === 'ro' ? 'lower' : 'export'}`;
    const daemon = this.#registry.spawn(
      name,
      [...this.nsenter(), 'sshfs', '-f', '-F', '/dev/null', '-o', options, `root@${home.address}:${home.path}`, target],
      {
        log: join(this.dir, `${name}.log`),
      },
    );
    this.#sshfs.push(daemon);
    const deadline = Date.now() + 15_000;
    while (!(await this.mounts()).some((m) => m.target === target && m.fstype === 'fuse.sshfs')) {
      if (!daemon.running() || Date.now() > deadline) {
        const log = await readFile(join(this.dir, `${name}.log`), 'utf8').catch(() => '');
        throw new Error(`cluster lab: node ${this.name}'s sshfs mount of the store at ${target} did not come up: ${log.trim().slice(-1000)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async #overlay(lower: string, target: string, name: string): Promise<void> {
    const options = `lowerdir=${lower},upperdir=${this.dir}/upper/${name},workdir=${this.dir}/work/${name}`;
    await this.run(['mount', '-t', 'overlay', `fnix-lab-${name}`, '-o', options, target]);
  }

  /** Refuses a node whose store is not what was asked for: a node writing to the machine's store would corrupt it. */
  async #check(store: StoreSource): Promise<void> {
    const mounts = await this.mounts();
    const last = (target: string) => mounts.filter((m) => m.target === target).at(-1);
    const problems: string[] = [];
    for (const target of ['/nix/store', '/nix/var/nix']) if (last(target)?.fstype !== 'overlay') problems.push(`${target} is not an overlay`);
    if (store.mode === 'shared' && last(this.lower)?.fstype !== 'fuse.sshfs') problems.push(`${this.lower} is not an sshfs mount`);
    if (last('/var/lib/containers')?.source === undefined) problems.push('/var/lib/containers is not bound');
    if (problems.length > 0) throw new Error(`cluster lab: node ${this.name}: ${problems.join('; ')}`);
  }

  /** The ids of every container the node's Podman knows, from its storage (found even when Podman cannot run). */
  async containerIds(): Promise<string[]> {
    const dir = join(this.dir, 'containers/lib/storage/overlay-containers');
    return (await readdir(dir).catch(() => [] as string[])).filter((name) => /^[0-9a-f]{64}$/.test(name));
  }

  /**
   * Removes every container of the node (a gateway killed by SIGKILL leaves its own), then kills whatever
   * else still runs in the node's mount namespace (conmon, sshfs, a gateway's children), by pid, and the
   * holder. Safe to call twice, and after a start that failed half-way.
   */
  async destroy(): Promise<void> {
    const ids = await this.containerIds();
    if (this.#holder?.running() && ids.length > 0) {
      await this.run(['podman', 'rm', '--all', '--force', '--time', '0'], { reject: false, timeoutMs: 60_000 });
    }
    // Containers whose conmon is gone, or that Podman could not remove.
    for (const pid of pidsOfContainers(ids)) signal(pid, 'SIGKILL');
    await Promise.all(this.#sshfs.map((daemon) => daemon.stop(2000)));
    if (this.#mountNs) {
      for (let round = 0; round < 50; round++) {
        const left = pidsInNamespaces(new Set(), new Set([this.#mountNs])).filter((pid) => pid !== this.#holder?.pid);
        if (left.length === 0) break;
        for (const pid of left) signal(pid, 'SIGKILL');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    await this.#holder?.stop(1000);
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // gone
  }
}

/** mountinfo escapes spaces, tabs, newlines and backslashes as octal. */
function unescapeMount(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}
