/**
 * @module
 * The shared store's "home" and its export: `<labdir>/home/store` seeded with hard links to the
 * machine's /nix/store (what production exports over NFS), served by an sshd in host `s`'s network
 * namespace with its own host key and authorized key, for the nodes' sshfs mounts.
 */
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { Daemon, ProcessRegistry } from './registry.ts';
import { sh } from './shell.ts';

/** The store folder the export serves, and how long seeding it took. */
export interface HomeStore {
  path: string;
  seedMs: number;
}

/**
 * `cp -al /nix/store/. <home>/store/`: every file a hard link, so the home holds what the machine's store
 * holds at this moment, in well under a second, and takes no space. Needs /nix and the lab folder on one
 * filesystem (they are here); elsewhere it copies.
 */
export async function seedHomeStore(labDir: string): Promise<HomeStore> {
  const path = join(labDir, 'home', 'store');
  await mkdir(path, { recursive: true });
  const sameFilesystem = (await stat('/nix/store')).dev === (await stat(path)).dev;
  const started = performance.now();
  await sh(['cp', sameFilesystem ? '-al' : '-a', '/nix/store/.', `${path}/`], { timeoutMs: 600_000 });
  return { path, seedMs: performance.now() - started };
}

/** The keys and config the export and its clients use. */
export interface ExportKeys {
  /** The private key every node's sshfs logs in with. */
  clientKey: string;
  sshdConfig: string;
}

/** Makes a host key, a client key, authorized_keys and an sshd config for an sshd listening on `address`. */
export async function writeExportConfig(labDir: string, address: string): Promise<ExportKeys> {
  const dir = join(labDir, 'ssh');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const hostKey = join(dir, 'host_ed25519');
  const clientKey = join(dir, 'client_ed25519');
  await sh(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'fnix-lab-host', '-f', hostKey]);
  await sh(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'fnix-lab-client', '-f', clientKey]);
  const authorized = join(dir, 'authorized_keys');
  await sh(['cp', `${clientKey}.pub`, authorized]);
  const sshdConfig = join(dir, 'sshd_config');
  // biome-ignore format: one directive a line
  await writeFile(sshdConfig, [
    `ListenAddress ${address}`,
    `HostKey ${hostKey}`,
    `AuthorizedKeysFile ${authorized}`,
    'PermitRootLogin prohibit-password',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    // The lab folder sits under /tmp, which is world-writable: StrictModes would refuse the key.
    'StrictModes no',
    'PidFile none',
    'Subsystem sftp internal-sftp',
    // sftp only: nothing else runs through this sshd.
    'ForceCommand internal-sftp',
    'AllowTcpForwarding no',
    'X11Forwarding no',
    // Many nodes mount at once: no start-up throttling.
    'MaxStartups 100',
    '',
  ].join('\n'), { mode: 0o600 });
  return { clientKey, sshdConfig };
}

/** Starts sshd in `nsPath`'s network namespace and resolves once it accepts connections on `address`:22. */
export async function startExport(registry: ProcessRegistry, labDir: string, nsPath: string, address: string, keys: ExportKeys): Promise<Daemon> {
  // sshd needs its privilege separation folder; Debian's init script makes the same one.
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  const sshd = registry.spawn('sshd', ['nsenter', `--net=${nsPath}`, '--', '/usr/sbin/sshd', '-D', '-e', '-f', keys.sshdConfig], {
    log: join(labDir, 's-sshd.log'),
  });
  const deadline = Date.now() + 10_000;
  while (!(await accepts(address, 22))) {
    if (!sshd.running()) throw new Error(`cluster lab: sshd exited at start; see ${join(labDir, 's-sshd.log')}`);
    if (Date.now() > deadline) throw new Error(`cluster lab: sshd does not accept connections on ${address}:22 after 10 s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return sshd;
}

/** Whether a TCP connection to `host`:`port` opens within a second. */
export function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 1000 });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.once('timeout', () => done(false));
  });
}
