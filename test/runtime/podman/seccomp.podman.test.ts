import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { DENIED_SYSCALLS, hardenProfile, type SeccompProfile } from '../../../runtime/podman/seccomp.ts';

/** A profile shaped like Podman's: an allow list, and rules that depend on capabilities. */
const base: SeccompProfile = {
  defaultAction: 'SCMP_ACT_ERRNO',
  defaultErrnoRet: 38,
  archMap: [{ architecture: 'SCMP_ARCH_X86_64', subArchitectures: [] }],
  syscalls: [
    { names: ['read', 'clone', 'clone3', 'unshare', 'mount', 'keyctl', 'write'], action: 'SCMP_ACT_ALLOW' },
    { names: ['setns', 'bpf'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_ADMIN'] } },
    { names: ['setns', 'bpf'], action: 'SCMP_ACT_ERRNO', errnoRet: 1, excludes: { caps: ['CAP_SYS_ADMIN'] } },
    { names: ['unshare'], action: 'SCMP_ACT_ALLOW' },
  ],
};

describe('fnix seccomp profile', () => {
  const profile = hardenProfile(base);
  const allowedNames = profile.syscalls.filter((rule) => rule.action === 'SCMP_ACT_ALLOW' && !rule.args).flatMap((rule) => rule.names);

  it('takes every denied call out of every rule that allows it, with or without capabilities', () => {
    for (const name of DENIED_SYSCALLS) expect(allowedNames).not.toContain(name);
    expect(allowedNames).toEqual(['read', 'write', 'bpf']);
    expect(profile.syscalls.some((rule) => rule.names.length === 0)).toBe(false);
  });

  it('refuses them with EPERM, and clone3 with ENOSYS so that libc falls back to clone', () => {
    expect(profile.syscalls[0]).toMatchObject({ names: [...DENIED_SYSCALLS], action: 'SCMP_ACT_ERRNO', errnoRet: 1 });
    expect(profile.syscalls[1]).toMatchObject({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 });
  });

  it('allows clone only without namespace flags, and refuses each namespace flag with EPERM', () => {
    const clones = profile.syscalls.filter((rule) => rule.names.includes('clone'));
    expect(clones[0]).toMatchObject({ action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0x7e02_0000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] });
    const refused = clones.slice(1).map((rule) => rule.args![0]!.value);
    expect(refused.reduce((all, flag) => all | flag, 0)).toBe(0x7e02_0000);
    for (const rule of clones.slice(1)) expect(rule).toMatchObject({ action: 'SCMP_ACT_ERRNO', errnoRet: 1 });
  });

  it('keeps the rest of the base profile as it was', () => {
    expect(profile.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(profile['defaultErrnoRet']).toBe(38);
    expect(profile['archMap']).toEqual(base['archMap']);
    // Less the names fnix redefines, from rules of every action, so that no two rules disagree.
    expect(profile.syscalls.at(-1)).toEqual({ ...base.syscalls[2], names: ['bpf'] });
  });

  it('reads a rule with a single "name", as containers/common allows', () => {
    const single = hardenProfile({
      defaultAction: 'SCMP_ACT_ERRNO',
      syscalls: [{ name: 'getpid', action: 'SCMP_ACT_ALLOW' } as never, { name: 'unshare', action: 'SCMP_ACT_ALLOW' } as never],
    });
    const allowed = single.syscalls.filter((rule) => rule.action === 'SCMP_ACT_ALLOW' && !rule.args);
    expect(allowed).toEqual([{ names: ['getpid'], action: 'SCMP_ACT_ALLOW' }]);
  });

  it('applies to the profile Podman installs, which allows user namespaces', async () => {
    const installed = JSON.parse(await readFile('/usr/share/containers/seccomp.json', 'utf8')) as SeccompProfile;
    const allows = (p: SeccompProfile, name: string) =>
      p.syscalls.some((rule) => rule.action === 'SCMP_ACT_ALLOW' && !rule.args?.length && rule.names.includes(name));
    expect(allows(installed, 'unshare')).toBe(true);
    expect(allows(hardenProfile(installed), 'unshare')).toBe(false);
    expect(allows(hardenProfile(installed), 'clone')).toBe(false);
    expect(allows(hardenProfile(installed), 'execve')).toBe(true);
  });
});
