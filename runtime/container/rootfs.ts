/**
 * @module
 * The root filesystem of every fnix container, made by fnix itself: no image and no registry. It holds
 * the agent, a few files Podman bind-mounts over, and empty mount points. It is mounted read-only;
 * everything a function runs comes from /nix/store.
 */
import { copyFile, mkdir, rename, rm, stat, symlink, writeFile, chmod } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { AGENT_PATH_IN_CONTAINER } from '../podman/run.ts';

const DIRECTORIES = ['dev', 'proc', 'sys', 'etc', 'fn', 'nix/store', 'run/fnix', 'run/secrets', 'sbin', 'usr/bin', 'tmp'];
const FILES: Record<string, string> = {
  'etc/passwd': 'root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
  'etc/group': 'root:x:0:\nnogroup:x:65534:\n',
  'etc/hosts': '127.0.0.1 localhost fnix\n::1 localhost\n',
  'etc/hostname': 'fnix\n',
  'etc/resolv.conf': '',
  'etc/nsswitch.conf': 'passwd: files\ngroup: files\nhosts: files dns\n',
  'run/.containerenv': '',
};

/**
 * Makes the rootfs for `agentBinary` under `parentDir` (once per agent build) and returns its path.
 * Built in a temporary folder and renamed into place, so a half-made rootfs is never used.
 */
export async function prepareRootfs(parentDir: string, agentBinary: string): Promise<string> {
  const dir = join(parentDir, basename(agentBinary));
  if (await exists(join(dir, AGENT_PATH_IN_CONTAINER))) return dir;
  const temporary = `${dir}.${process.pid}.tmp`;
  await rm(temporary, { recursive: true, force: true });
  for (const sub of DIRECTORIES) await mkdir(join(temporary, sub), { recursive: true, mode: 0o755 });
  await chmod(join(temporary, 'tmp'), 0o1777); // the tmpfs over /tmp copies this mode
  for (const [file, content] of Object.entries(FILES)) await writeFile(join(temporary, file), content, { mode: 0o644 });
  await copyFile(agentBinary, join(temporary, AGENT_PATH_IN_CONTAINER));
  await chmod(join(temporary, AGENT_PATH_IN_CONTAINER), 0o555);
  // The agent doubles as env(1), so "#!/usr/bin/env bash" finds bash on the function's PATH.
  await symlink(AGENT_PATH_IN_CONTAINER, join(temporary, 'usr/bin/env'));
  await symlink('/proc/mounts', join(temporary, 'etc/mtab'));
  await rename(temporary, dir).catch(async (error: NodeJS.ErrnoException) => {
    // another process made it first
    await rm(temporary, { recursive: true, force: true });
    if (!(await exists(join(dir, AGENT_PATH_IN_CONTAINER)))) throw error;
  });
  return dir;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
