/**
 * @module
 * fnix's seccomp profile: Podman's default, less what untrusted code has no use for and what widens the
 * kernel surface it can reach. Podman's own profile lets a process without capabilities create user
 * namespaces (`unshare -U`, `clone(CLONE_NEWUSER)`), and inside one it gains every capability over
 * mount, network and other namespaces of its own: the door through which many kernel bugs are reached.
 * fnix closes it, as Docker's default profile does:
 * - `unshare`, `setns`, and `clone` with any namespace flag: EPERM; `clone3`: ENOSYS, so that libc
 *   falls back to `clone`, whose flags a filter can read (clone3's are behind a pointer);
 * - mounting (`mount`, the new mount API, `pivot_root`, `umount`): EPERM;
 * - the kernel keyring (`keyctl`, `add_key`, `request_key`), which is not namespaced, and `syslog`:
 *   EPERM.
 * Everything else is Podman's default, which already refuses `bpf`, `perf_event_open`, `userfaultfd`,
 * `io_uring` and module loading to a process without capabilities.
 */
import { access, rename, readFile, writeFile } from 'node:fs/promises';
import { FnixError } from '../errors.ts';

/** Where Podman's default profile is: an administrator's copy in /etc first, as Podman reads it. */
const DEFAULT_PROFILES = ['/etc/containers/seccomp.json', '/usr/share/containers/seccomp.json'];

/** Refused with EPERM. */
// biome-ignore format: grouped by what they reach (namespaces, mounts, the keyring, the kernel log)
export const DENIED_SYSCALLS = [
  'unshare', 'setns',
  'mount', 'umount', 'umount2', 'pivot_root', 'mount_setattr', 'move_mount', 'open_tree',
  'fsopen', 'fsconfig', 'fsmount', 'fspick',
  'keyctl', 'add_key', 'request_key',
  'syslog',
] as const;

/** clone(2) flags that make a namespace (linux/sched.h). */
const NAMESPACE_FLAGS = {
  CLONE_NEWNS: 0x0002_0000,
  CLONE_NEWCGROUP: 0x0200_0000,
  CLONE_NEWUTS: 0x0400_0000,
  CLONE_NEWIPC: 0x0800_0000,
  CLONE_NEWUSER: 0x1000_0000,
  CLONE_NEWPID: 0x2000_0000,
  CLONE_NEWNET: 0x4000_0000,
} as const;

const EPERM = 1;
const ENOSYS = 38;

/** The parts of a containers/common seccomp profile that fnix reads or writes. */
interface SeccompRule {
  names: string[];
  /** A single name, which containers/common accepts instead of `names`. */
  name?: string;
  action: string;
  args?: { index: number; value: number; valueTwo: number; op: string }[] | null;
  errnoRet?: number;
  [other: string]: unknown;
}
export interface SeccompProfile {
  defaultAction: string;
  syscalls: SeccompRule[];
  [other: string]: unknown;
}

/**
 * fnix's profile from Podman's default: the names above leave every rule that allows them, and rules
 * that refuse them come first. Only `clone`'s first argument is its flags on x86_64 and arm64, the
 * architectures fnix runs on (s390 swaps the first two).
 */
export function hardenProfile(base: SeccompProfile): SeccompProfile {
  const removed = new Set<string>([...DENIED_SYSCALLS, 'clone', 'clone3']);
  // Every rule of the base that names one of these goes, whatever its action, so that no two rules
  // for one call disagree (libseccomp refuses a profile where they do).
  const kept = base.syscalls
    .map(({ name, ...rule }) => ({ ...rule, names: [...(rule.names ?? []), ...(name ? [name] : [])].filter((n) => !removed.has(n)) }))
    .filter((rule) => rule.names.length > 0);
  const allFlags = Object.values(NAMESPACE_FLAGS).reduce((all, flag) => all | flag, 0);
  const ours: SeccompRule[] = [
    { names: [...DENIED_SYSCALLS], action: 'SCMP_ACT_ERRNO', errnoRet: EPERM },
    { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
    { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: allFlags, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] },
    ...Object.values(NAMESPACE_FLAGS).map(
      (flag): SeccompRule => ({
        names: ['clone'],
        action: 'SCMP_ACT_ERRNO',
        errnoRet: EPERM,
        args: [{ index: 0, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' }],
      }),
    ),
  ];
  return { ...base, syscalls: [...ours, ...kept] };
}

/**
 * Writes fnix's profile to `path` (atomically) from Podman's default profile, and returns `path`, for
 * `--security-opt seccomp=<path>`. Throws RUNTIME_UNAVAILABLE when Podman's profile is missing.
 */
export async function writeSeccompProfile(path: string): Promise<string> {
  const source = await firstExisting(DEFAULT_PROFILES);
  if (!source) {
    throw new FnixError(
      'RUNTIME_UNAVAILABLE',
      `Podman's default seccomp profile is missing (looked for ${DEFAULT_PROFILES.join(' and ')}); install it with: apt-get install golang-github-containers-common`,
    );
  }
  const base = JSON.parse(await readFile(source, 'utf8')) as SeccompProfile;
  if (!Array.isArray(base.syscalls)) throw new FnixError('RUNTIME_UNAVAILABLE', `${source} is not a seccomp profile (no "syscalls" list)`);
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(hardenProfile(base), null, 1)}\n`, { mode: 0o644 });
  await rename(temporary, path);
  return path;
}

async function firstExisting(paths: readonly string[]): Promise<string | undefined> {
  for (const path of paths) {
    if (
      await access(path).then(
        () => true,
        () => false,
      )
    )
      return path;
  }
  return undefined;
}
