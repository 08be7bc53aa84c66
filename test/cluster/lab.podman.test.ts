/**
 * @module
 * The cluster lab itself (test/helpers/cluster/), in shared-store mode: its network reaches every host
 * over the lab's own veth and nowhere else; each node has its own store overlay over sshfs and its own
 * Podman, two of which run at once; a store path looked up before it existed shows after a remount of
 * the node's overlay, the remedy activation relies on; the sshfs lower survives a 3 s cut; a partition
 * cuts TCP both ways and heals; three gateways serve at once; and destroy leaves no process, namespace,
 * link, mount or folder behind.
 */
import { copyFile, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ClusterLab } from '../helpers/cluster/lab.ts';
import { PROJECT_ROOT } from '../helpers/cluster/node.ts';
import { type LabRecord, pidsInNamespaces, pidsOfContainers, stillRunning } from '../helpers/cluster/registry.ts';
import { accepts } from '../helpers/cluster/store-export.ts';

let lab: ClusterLab;
/** A root filesystem of one static busybox, for containers started by hand. */
let rootfs: string;

beforeAll(async () => {
  // The nodes run the compiled gateway; a build that is up to date takes no time.
  await execa('bash', ['scripts/build.sh'], { cwd: PROJECT_ROOT });
  lab = await ClusterLab.create({ store: 'shared' });
  rootfs = join(lab.dir, 'rootfs');
  await mkdir(join(rootfs, 'bin'), { recursive: true });
  await copyFile('/bin/busybox', join(rootfs, 'bin/busybox'));
});

afterEach(async ({ task }) => {
  if (task.result?.state === 'fail' && lab) console.log(await lab.logTails());
});

afterAll(async () => {
  await lab?.destroy();
});

/** `podman run` options for a busybox container over the node's store, as fnix mounts it. */
function busybox(...command: string[]): string[] {
  // biome-ignore format: one option and its value a line
  return [
    '--ulimit', 'nofile=1024:1024',
    '--ulimit', 'nproc=512:512',
    '--network', 'none',
    '--volume', '/nix/store:/nix/store:O',
    '--rootfs', rootfs,
    '/bin/busybox', ...command,
  ];
}

/** Whether a TCP connection from `from`'s namespace to `to`:`port` opens within 2 s. */
async function connects(from: string, to: string, port: number): Promise<boolean> {
  const result = await lab.run(from, ['timeout', '2', 'bash', '-c', `exec 3<>/dev/tcp/${lab.ip(to)}/${port}`], { reject: false });
  return result.exitCode === 0;
}

/** Whether `path` exists as `node` sees it (its mount namespace). */
async function exists(node: string, path: string): Promise<boolean> {
  return (await lab.run(node, ['test', '-e', path], { reject: false })).exitCode === 0;
}

describe('the cluster lab (shared store)', () => {
  it('reaches every host from the test over the lab veth, never the default route, and the hosts reach nothing else', async () => {
    for (const host of lab.network.hosts) {
      const route = (await execa('ip', ['route', 'get', lab.ip(host)])).stdout;
      expect(route, host).toContain(`dev ${lab.network.rootLink} src ${lab.ip('root')}`);
      expect(route, host).not.toContain(' via ');
    }
    // One route of the machine covers the lab's /24: its own, on its own veth.
    const routes = (await execa('ip', ['route'])).stdout
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line.startsWith(`${lab.network.prefix}.`));
    expect(routes).toEqual([`${lab.network.prefix}.0/24 dev ${lab.network.rootLink} proto kernel scope link src ${lab.ip('root')}`]);
    // The export and etcd answer the test; a node answers too (a refusal comes from the host itself).
    expect(await accepts(lab.ip('s'), 22)).toBe(true);
    for (const member of ['e1', 'e2', 'e3']) expect(await accepts(lab.ip(member), 2379), member).toBe(true);
    expect(await connects('n1', 's', 22)).toBe(true);
    expect(await connects('lb', 'e2', 2379)).toBe(true);
    // No host has a default route: an address outside the lab is unreachable from inside.
    const inside = await lab.run('n1', ['ip', 'route', 'get', '192.0.2.1'], { reject: false });
    expect(inside.exitCode).not.toBe(0);
    expect(inside.stderr).toMatch(/unreachable/i);
    expect((await lab.run('e1', ['ip', 'route'])).stdout).not.toContain('default');
    expect(await lab.etcdLeader()).toMatch(/^e[123]$/);
    expect(lab.home!.seedMs).toBeLessThan(30_000);
  });

  it('gives each node its own store overlay over sshfs and its own Podman, and two nodes run containers at once', async () => {
    for (const node of lab.nodes()) {
      const mounts = await lab.host(node).mounts();
      const at = (target: string) => mounts.filter((m) => m.target === target).at(-1);
      expect(at('/nix/store')?.superOptions, node).toContain(`lowerdir=${lab.host(node).lower}`);
      expect(at(lab.host(node).lower)?.fstype, node).toBe('fuse.sshfs');
      expect(at(lab.host(node).exportDir)?.fstype, node).toBe('fuse.sshfs');
      expect(at('/nix/var/nix')?.superOptions, node).toContain('lowerdir=/nix/var/nix');
      expect(at('/var/lib/containers')?.fstype, node).toBeDefined();
    }
    // None of it shows in the test's own mount namespace (which holds only `ip netns`'s own mounts).
    expect(await readFile('/proc/self/mountinfo', 'utf8')).not.toContain(lab.dir);
    const [one, two] = await Promise.all(
      ['n1', 'n2'].map((node) => lab.run(node, ['podman', 'run', '--rm', ...busybox('sh', '-c', 'ls /nix/store | wc -l')], { timeoutMs: 60_000 })),
    );
    const storePaths = (await readdir(lab.home!.path)).filter((name) => !name.startsWith('.')).length;
    expect(Number(one!.stdout)).toBe(storePaths);
    expect(Number(two!.stdout)).toBe(storePaths);
    expect(`${one!.stderr}${two!.stderr}`).not.toMatch(/lock/i);
    // A container of n2 is n2's only.
    await lab.run('n2', ['podman', 'run', '-d', '--name', 'only-on-n2', ...busybox('sleep', '600')]);
    expect((await lab.run('n2', ['podman', 'ps', '--format', '{{.Names}}'])).stdout).toContain('only-on-n2');
    expect((await lab.run('n1', ['podman', 'ps', '-a', '--format', '{{.Names}}'])).stdout).not.toContain('only-on-n2');
    await lab.run('n2', ['podman', 'rm', '-f', '-t', '0', 'only-on-n2']);
  });

  it('shows a store path looked up before it existed once the node remounts its overlay, and to new containers', async () => {
    const name = `${lab.runId}aaaaaaaaaaaaaaaaaaaaaaaaaa-spike`;
    const path = `/nix/store/${name}`;
    // A container over n1's store that looks the path up before it exists, and one that never does.
    await lab.run('n1', ['podman', 'run', '-d', '--name', 'looked', ...busybox('sleep', '600')]);
    await lab.run('n1', ['podman', 'run', '-d', '--name', 'never-looked', ...busybox('sleep', '600')]);
    const inContainer = async (container: string) =>
      (await lab.run('n1', ['podman', 'exec', container, '/bin/busybox', 'test', '-e', path], { reject: false })).exitCode === 0;
    expect(await exists('n1', path)).toBe(false);
    expect(await inContainer('looked')).toBe(false);
    // The builder publishes it through its read-write mount of the export.
    await lab.run('n1', ['mkdir', join(lab.host('n1').exportDir, name)]);
    await lab.run('n1', ['sh', '-c', `echo published > ${join(lab.host('n1').exportDir, name, 'file')}`]);
    expect((await stat(join(lab.home!.path, name, 'file'))).size).toBeGreaterThan(0);
    // The lower layer has it; the overlay still answers from its cached negative lookup.
    expect(await exists('n1', join(lab.host('n1').lower, name))).toBe(true);
    expect(await exists('n1', path)).toBe(false);
    const fresh = await lab.run('n1', ['podman', 'run', '--rm', ...busybox('test', '-e', path)], { reject: false });
    expect(fresh.exitCode, 'a new container before the remount').not.toBe(0);
    // A node that never looked it up sees it at once.
    expect(await exists('n2', path)).toBe(true);

    // The remedy: remount the node's overlay, in its mount namespace, while containers hold it.
    await lab.run('n1', ['mount', '-o', 'remount', '/nix/store']);
    expect(await exists('n1', path)).toBe(true);
    expect((await lab.run('n1', ['cat', `${path}/file`])).stdout).toBe('published');
    const after = await lab.run('n1', ['podman', 'run', '--rm', ...busybox('cat', `${path}/file`)], { reject: false });
    expect(after.stdout, 'a new container after the remount').toBe('published');
    expect(await inContainer('never-looked'), 'a running container that never looked').toBe(true);
    // A running container that looked it up keeps its own negative entry (its own overlay, which the
    // node's remount does not reach): fnix must not look a path up in a container before it is visible.
    expect(await inContainer('looked'), 'a running container that looked before').toBe(false);
    await lab.run('n1', ['podman', 'rm', '-f', '-t', '0', 'looked', 'never-looked']);
  });

  it('keeps the sshfs lower through a 3 s cut from the store: a read during the cut waits, then completes', async () => {
    const name = `${lab.runId}-cut-${Date.now()}`;
    await lab.partition('n3', ['s']);
    try {
      await writeFile(join(lab.home!.path, name), 'after the cut\n');
      const started = performance.now();
      const read = lab.run('n3', ['cat', join(lab.host('n3').lower, name)], { reject: false, timeoutMs: 30_000 });
      await new Promise((resolve) => setTimeout(resolve, 3000));
      await lab.heal('n3', ['s']);
      const result = await read;
      expect(result.stdout).toBe('after the cut');
      expect(performance.now() - started).toBeGreaterThan(2900);
    } finally {
      await lab.heal('n3');
    }
    expect(await exists('n3', `/nix/store/${name}`)).toBe(true);
  });

  it('cuts TCP both ways with a partition, and heals it', async () => {
    const listener = lab.spawn('n1', 'listener', [process.execPath, '-e', "require('net').createServer((s) => s.end()).listen(7000, '0.0.0.0')"]);
    const deadline = Date.now() + 10_000;
    while (!(await connects('e1', 'n1', 7000))) {
      if (Date.now() > deadline) throw new Error('the listener on n1 did not come up');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await lab.partition('n1', ['e1', 'e2', 'e3']);
    expect(lab.network.cuts()).toHaveLength(6);
    for (const member of ['e1', 'e2', 'e3']) {
      expect(await connects('n1', member, 2379), `n1 to ${member}`).toBe(false);
      expect(await connects(member, 'n1', 7000), `${member} to n1`).toBe(false);
    }
    // The rest of the lab is untouched.
    expect(await connects('n2', 'e1', 2379)).toBe(true);
    expect(await connects('n1', 's', 22)).toBe(true);
    expect(await accepts(lab.ip('n1'), 7000)).toBe(true);
    await lab.heal('n1');
    expect(lab.network.cuts()).toEqual([]);
    expect(await connects('n1', 'e1', 2379)).toBe(true);
    expect(await connects('e3', 'n1', 7000)).toBe(true);
    await listener.stop();
  });

  it('kills the etcd leader, elects another, and restarts the killed member into the cluster', async () => {
    const put = async (member: string, value: string) => {
      const body = JSON.stringify({ key: Buffer.from(`/lab/${lab.runId}`).toString('base64'), value: Buffer.from(value).toString('base64') });
      return (await fetch(`http://${lab.ip(member)}:2379/v3/kv/put`, { method: 'POST', body, signal: AbortSignal.timeout(5000) })).status;
    };
    const first = await lab.etcdLeader();
    expect(first).toMatch(/^e[123]$/);
    await lab.killEtcd(first!);
    expect(lab.etcd.process(first!)).toBeUndefined();
    const second = await lab.etcd.waitForLeader(15_000);
    expect(second).not.toBe(first);
    expect(await put(second, 'after the kill')).toBe(200);
    await lab.restartEtcd(first!);
    expect(await lab.etcd.waitForLeader(15_000)).toMatch(/^e[123]$/);
    expect(await put(first!, 'after the restart')).toBe(200);
    expect(lab.etcdEndpoints()).toEqual(['e1', 'e2', 'e3'].map((member) => `http://${lab.ip(member)}:2379`));
  });

  it('runs a gateway on each node, all serving /fn/hello at once, behind HAProxy', async () => {
    const nodes = lab.nodes().map((node) => lab.startNode(node, { FNIX_TOKEN: 'test-token-0123456789' }));
    await Promise.all(nodes.map((node) => node.waitHealthy(50_000)));
    const answers = await Promise.all(
      nodes.map(async (node) => {
        const response = await fetch(`${node.url}/fn/hello?name=${node.name}`, { method: 'POST' });
        return `${response.status} ${(await response.text()).trim()}`;
      }),
    );
    expect(answers).toEqual(nodes.map((node) => `200 Hello, ${node.name}! This is fnix.`));
    for (const node of nodes) expect(await node.bugs()).toEqual([]);
    // HAProxy in lb, round robin over the three, then reloaded onto n3 alone.
    const config = (servers: string[]) =>
      [
        'defaults',
        '  mode http',
        '  timeout connect 2s',
        '  timeout client 10s',
        '  timeout server 10s',
        'frontend web',
        `  bind ${lab.ip('lb')}:80`,
        '  default_backend nodes',
        'backend nodes',
        '  balance roundrobin',
        '  http-response set-header x-lab-server %s',
        ...servers.map((node) => `  server ${node} ${lab.ip(node)}:8080`),
      ].join('\n');
    const servedBy = async () => {
      const names = [];
      for (let i = 0; i < 3; i++) {
        const response = await fetch(`http://${lab.ip('lb')}/fn/hello`, { method: 'POST' });
        expect(response.status).toBe(200);
        names.push(response.headers.get('x-lab-server'));
      }
      return names.sort();
    };
    const haproxy = await lab.startHaproxy(config(lab.nodes()));
    expect(await servedBy()).toEqual(['n1', 'n2', 'n3']);
    await lab.reloadHaproxy(config(['n3']));
    expect(await servedBy()).toEqual(['n3', 'n3', 'n3']);
    expect(lab.haproxy.process?.pid).toBe(haproxy.pid);
    await expect(lab.reloadHaproxy('frontend broken\n  bind nowhere')).rejects.toThrow(/refuses the configuration/);
    // A crash, for destroy to clean up after.
    await nodes[0]!.kill();
  }, 60_000);

  it('leaves nothing behind when destroyed, and destroys twice without complaint', async () => {
    const record = JSON.parse(await readFile(join(lab.dir, 'lab.json'), 'utf8')) as LabRecord;
    expect(record.processes.length).toBeGreaterThan(10);
    const namespaces = lab.network.namespaceIds();
    const mountNamespaces = new Set(lab.nodes().map((node) => lab.host(node).mountNs!));
    const containers = (await Promise.all(lab.nodes().map((node) => lab.host(node).containerIds()))).flat();
    await lab.destroy();
    await lab.destroy();
    expect(record.processes.filter((p) => stillRunning(p))).toEqual([]);
    expect(pidsInNamespaces(namespaces, mountNamespaces)).toEqual([]);
    expect(pidsOfContainers(containers)).toEqual([]);
    const left = await execa('pgrep', ['-af', lab.runId], { reject: false });
    expect(left.stdout).toBe('');
    expect((await execa('ip', ['netns', 'list'])).stdout).not.toContain(lab.runId);
    expect((await execa('ip', ['link'])).stdout).not.toContain(lab.network.rootLink);
    expect((await execa('ip', ['route'])).stdout).not.toContain(`${lab.network.prefix}.`);
    expect(await readFile('/proc/self/mountinfo', 'utf8')).not.toContain(lab.runId);
    await expect(stat(lab.dir)).rejects.toThrow(/ENOENT/);
  });
});
