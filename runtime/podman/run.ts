/**
 * @module
 * `podman run` for an fnix container: the isolation every container gets, whatever it will serve.
 */
import type { Podman } from './podman.ts';

/** The agent's path inside the rootfs that fnix builds (runtime/container/rootfs.ts). */
export const AGENT_PATH_IN_CONTAINER = '/sbin/fnix-agent';

/** Limits every container starts with (gateway/config.ts sets them, from the environment). */
export interface ContainerLimits {
  /** The memory limit the container starts with, in MiB; specialisation sets the function's own. */
  memoryMb: number;
  /** The pids cgroup limit; the per-uid process limit (nproc) sits a little above it. */
  pidsLimit: number;
  /** Open files per process, soft and hard. */
  nofile: number;
  /** Size of the tmpfs at /tmp, which is HOME, in MiB. */
  tmpMb: number;
  /** Size of /dev/shm, in MiB. */
  shmMb: number;
  /** CPUs a container may use (a CFS quota), so that one function cannot starve the host. */
  cpus: number;
}

/** Everything that distinguishes one container from another. */
export interface ContainerSpec extends ContainerLimits {
  name: string;
  labels: Readonly<Record<string, string>>;
  /** The read-only root filesystem fnix made (no image, no registry). */
  rootfs: string;
  /** Host folder mounted read-only at /run/fnix; holds the socket the agent connects to. */
  controlDir: string;
  /** Host folder mounted read-only at /fn; the function's files are linked into it on specialisation. */
  functionDir: string;
  /** The non-root uid (and gid) every process in the container runs as. */
  uid: number;
  /** Network access; false gives `--network none`. */
  network: boolean;
  /** fnix's seccomp profile, written by writeSeccompProfile (runtime/podman/seccomp.ts). */
  seccompProfile: string;
}

/** What every fnix container is confined by, whatever it serves. */
export type IsolationSpec = ContainerLimits & Pick<ContainerSpec, 'uid' | 'network' | 'seccompProfile'>;

/** Size of the tmpfs at /run/secrets, in MiB: room for what one invocation may be given (runtime/secrets/delivery.ts). */
const SECRETS_TMPFS_MB = 2;

/** How far the per-uid process limit sits above the pids cgroup limit. */
const NPROC_MARGIN = 64;

/**
 * The `podman run` options that confine a container: read-only root, size-limited /tmp, a private
 * tmpfs for secrets at /run/secrets, the store as an
 * overlay, a non-root user, no network unless asked, memory, pids, CPU and ulimits, no capabilities,
 * fnix's seccomp profile (no user namespaces, no mounts, no kernel keyring).
 */
export function isolationArgs(spec: IsolationSpec): string[] {
  // biome-ignore format: one option and its value per line
  return [
    '--read-only',
    '--read-only-tmpfs=false',
    '--tmpfs', `/tmp:rw,nosuid,nodev,size=${spec.tmpMb}m`,
    // The secrets of the invocation under way, written and removed by the agent (docs/secrets.md):
    // memory only, owned by the container's uid (`U`; podman 4.3 takes no uid= here) and mode 0700,
    // which the agent sets again at its start and after every invocation; nothing in it runs.
    '--tmpfs', `/run/secrets:rw,nosuid,nodev,noexec,size=${SECRETS_TMPFS_MB}m,mode=0700,U`,
    '--shm-size', `${spec.shmMb}m`,
    '--volume', '/nix/store:/nix/store:O',
    '--user', `${spec.uid}:${spec.uid}`,
    '--network', spec.network ? 'bridge' : 'none',
    '--hostname', 'fnix',
    '--memory', `${spec.memoryMb}m`,
    '--memory-swap', `${spec.memoryMb}m`,
    '--pids-limit', String(spec.pidsLimit),
    '--cpus', String(spec.cpus),
    // Explicit ulimits: podman's default open-files limit can exceed the host's hard limit, and the
    // process limit is per uid, which is why every container gets a uid of its own. It is a backstop
    // above the pids cgroup limit, so that the cgroup is what stops a fork bomb, and counts it
    // (pids.events), which is how fnix knows not to reuse that container.
    '--ulimit', `nofile=${spec.nofile}:${spec.nofile}`,
    '--ulimit', `nproc=${spec.pidsLimit + NPROC_MARGIN}:${spec.pidsLimit + NPROC_MARGIN}`,
    '--ulimit', 'core=0:0',
    '--cap-drop', 'all',
    '--security-opt', 'no-new-privileges',
    '--security-opt', `seccomp=${spec.seccompProfile}`,
  ];
}

/** The arguments of `podman run` for `spec`. Every option goes before --rootfs; the command after it. */
export function buildRunArgs(spec: ContainerSpec): string[] {
  const args = ['run', '--detach', '--rm', '--name', spec.name];
  for (const [key, value] of Object.entries(spec.labels)) args.push('--label', `${key}=${value}`);
  // biome-ignore format: one option and its value per line
  args.push(
    ...isolationArgs(spec),
    '--volume', `${spec.functionDir}:/fn:ro`,
    '--volume', `${spec.controlDir}:/run/fnix:ro`,
    '--log-driver', 'none',
    '--rootfs', spec.rootfs,
    AGENT_PATH_IN_CONTAINER,
  );
  return args;
}

/** Starts a container; resolves with its full id once podman has started it. */
export async function runContainer(podman: Podman, spec: ContainerSpec): Promise<string> {
  const { stdout } = await podman.exec(buildRunArgs(spec));
  return String(stdout).trim();
}
