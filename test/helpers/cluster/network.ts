/**
 * @module
 * The lab's network: a private /24 that no route of the machine overlaps, a "switch" namespace holding a
 * bridge, one network namespace per host joined to it by a veth pair, and one veth from the root
 * namespace (address .1), so that the test process reaches every host over that connected route and
 * never the default one. Hosts have no default route: nothing they send can leave the lab.
 * A partition is a pair of blackhole routes, one in each host's namespace, so TCP is cut both ways.
 */
import { statSync } from 'node:fs';
import { output, sh } from './shell.ts';

/** The last octet of each host's address. Extra nodes `n<k>` get 20+k, extra etcd members `e<k>` 10+k. */
const OCTETS: Record<string, number> = { s: 10, lb: 30 };
function octetOf(host: string): number {
  const fixed = OCTETS[host];
  if (fixed !== undefined) return fixed;
  const match = /^([en])([1-9])$/.exec(host);
  if (!match) throw new Error(`cluster lab: no address for host ${host}: hosts are s, lb, e1..e9 and n1..n9`);
  return (match[1] === 'e' ? 10 : 20) + Number(match[2]);
}

/** A 10.x.y.0/24 between 10.200.0.0 and 10.250.255.0 that overlaps none of the machine's routes or addresses. */
export async function freeSubnet(): Promise<string> {
  const routes = JSON.parse(await output(['ip', '-j', 'route', 'show', 'table', 'all'])) as { dst: string }[];
  const addresses = JSON.parse(await output(['ip', '-j', '-4', 'addr'])) as { addr_info: { local: string; prefixlen: number }[] }[];
  const taken = [
    ...routes.filter((r) => r.dst && r.dst !== 'default' && /^\d/.test(r.dst)).map((r) => r.dst),
    ...addresses.flatMap((link) => link.addr_info.map((a) => `${a.local}/${a.prefixlen}`)),
  ].map(parseCidr);
  for (let attempt = 0; attempt < 200; attempt++) {
    const prefix = `10.${200 + Math.floor(Math.random() * 51)}.${Math.floor(Math.random() * 256)}`;
    const mine = parseCidr(`${prefix}.0/24`);
    if (!taken.some((other) => overlaps(mine, other))) return prefix;
  }
  throw new Error('cluster lab: found no free /24 in 10.200.0.0-10.250.255.0: `ip route` shows them all taken');
}

function parseCidr(cidr: string): { base: number; bits: number } {
  const [address, bits] = cidr.split('/');
  const base = address!.split('.').reduce((n, part) => n * 256 + Number(part), 0);
  return { base, bits: bits === undefined ? 32 : Number(bits) };
}

function overlaps(a: { base: number; bits: number }, b: { base: number; bits: number }): boolean {
  const bits = Math.min(a.bits, b.bits);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return (a.base & mask) >>> 0 === (b.base & mask) >>> 0;
}

/** The lab's namespaces and addresses. */
export class LabNetwork {
  readonly runId: string;
  /** The first three octets of the /24, `10.231.7`. */
  readonly prefix: string;
  readonly hosts: readonly string[];
  /** The root namespace's veth; its address is `<prefix>.1`. */
  readonly rootLink: string;
  readonly #cuts = new Set<string>();

  constructor(runId: string, prefix: string, hosts: readonly string[]) {
    this.runId = runId;
    this.prefix = prefix;
    this.hosts = hosts;
    this.rootLink = runId;
    for (const host of hosts) octetOf(host);
  }

  /** Every `ip netns` name the lab makes: the switch's and each host's. */
  namespaces(): string[] {
    return [this.switchNs, ...this.hosts.map((host) => this.ns(host))];
  }

  get switchNs(): string {
    return `${this.runId}-sw`;
  }

  /** The `ip netns` name of `host`. */
  ns(host: string): string {
    if (!this.hosts.includes(host)) throw new Error(`cluster lab: no host ${host} in this lab (it has ${this.hosts.join(', ')})`);
    return `${this.runId}-${host}`;
  }

  /** The file that names `host`'s network namespace, for `nsenter --net=`. */
  nsPath(host: string): string {
    return `/run/netns/${this.ns(host)}`;
  }

  /** `host`'s address. */
  ip(host: string): string {
    if (host === 'root') return `${this.prefix}.1`;
    this.ns(host);
    return `${this.prefix}.${octetOf(host)}`;
  }

  /** The namespaces' identities as /proc/<pid>/ns/net shows them (`net:[inode]`), of those that exist. */
  namespaceIds(): Set<string> {
    const ids = new Set<string>();
    for (const name of this.namespaces()) {
      try {
        ids.add(`net:[${statSync(`/run/netns/${name}`).ino}]`);
      } catch {
        // not made, or gone
      }
    }
    return ids;
  }

  /** Makes the switch, the hosts and the root's veth. */
  async create(): Promise<void> {
    const sw = this.switchNs;
    await sh(['ip', 'netns', 'add', sw]);
    await sh(['ip', '-n', sw, 'link', 'set', 'lo', 'up']);
    await sh(['ip', '-n', sw, 'link', 'add', 'br0', 'type', 'bridge']);
    await sh(['ip', '-n', sw, 'link', 'set', 'br0', 'up']);
    // The root's veth; its peer is a port of the bridge.
    await sh(['ip', 'link', 'add', this.rootLink, 'type', 'veth', 'peer', 'name', 'root', 'netns', sw]);
    await sh(['ip', 'addr', 'add', `${this.prefix}.1/24`, 'dev', this.rootLink]);
    await sh(['ip', 'link', 'set', this.rootLink, 'up']);
    await sh(['ip', '-n', sw, 'link', 'set', 'root', 'master', 'br0', 'up']);
    await Promise.all(this.hosts.map((host) => this.#createHost(host)));
  }

  async #createHost(host: string): Promise<void> {
    const ns = this.ns(host);
    await sh(['ip', 'netns', 'add', ns]);
    await sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    // Made in place: eth0 in the host's namespace, its peer (named after the host) in the switch's.
    await sh(['ip', 'link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', host, 'netns', this.switchNs]);
    await sh(['ip', '-n', ns, 'addr', 'add', `${this.ip(host)}/24`, 'dev', 'eth0']);
    await sh(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
    await sh(['ip', '-n', this.switchNs, 'link', 'set', host, 'master', 'br0', 'up']);
  }

  /** Cuts `host` off from each of `from` (both ways: a blackhole route in each namespace). */
  async partition(host: string, from: readonly string[]): Promise<void> {
    for (const other of from) {
      for (const [a, b] of [
        [host, other],
        [other, host],
      ] as const) {
        const key = `${a}>${b}`;
        if (this.#cuts.has(key)) continue;
        await sh(['nsenter', `--net=${this.nsPath(a)}`, 'ip', 'route', 'add', 'blackhole', `${this.ip(b)}/32`]);
        this.#cuts.add(key);
      }
    }
  }

  /** Undoes {@link partition} between `host` and each of `from` (all the hosts it is cut off from, by default). */
  async heal(host: string, from?: readonly string[]): Promise<void> {
    const others = from ?? [...this.#cuts].filter((key) => key.startsWith(`${host}>`)).map((key) => key.slice(host.length + 1));
    for (const other of others) {
      for (const [a, b] of [
        [host, other],
        [other, host],
      ] as const) {
        const key = `${a}>${b}`;
        if (!this.#cuts.has(key)) continue;
        await sh(['nsenter', `--net=${this.nsPath(a)}`, 'ip', 'route', 'del', 'blackhole', `${this.ip(b)}/32`]);
        this.#cuts.delete(key);
      }
    }
  }

  /** The pairs cut now, as `a>b` (a has a blackhole route to b). */
  cuts(): string[] {
    return [...this.#cuts];
  }
}

/** Deletes the namespaces `names` and the root's veth `rootLink`, those that exist. */
export async function removeNetwork(names: readonly string[], rootLink: string): Promise<void> {
  const existing = new Set((await output(['ip', 'netns', 'list'])).split('\n').map((line) => line.split(' ')[0]));
  for (const name of names) if (existing.has(name)) await sh(['ip', 'netns', 'del', name]);
  // Deleting the switch's namespace destroys the root veth's peer and so the root veth; this is for a
  // start that failed between the two.
  await sh(['ip', 'link', 'del', rootLink], { reject: false });
}
