/**
 * @module
 * What an earlier, crashed lab left: found from the records (`/tmp/fnix-lab-<run>/lab.json`) of labs
 * whose owner (the test process that made them) is dead. Their processes are killed by recorded pid
 * (with its start time, so a reused pid is left alone) and by membership of the lab's own namespaces;
 * their containers by the ids in their Podman storage; then their namespaces, root veth and folder go.
 * A lab whose owner lives (another test file running now) is never touched. Namespaces with the lab
 * prefix and no record at all are deleted too (that kills nothing).
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { removeNetwork } from './network.ts';
import { type LabRecord, pidsInNamespaces, pidsOfContainers, stillRunning } from './registry.ts';
import { output } from './shell.ts';

/** Where labs live: `<LAB_ROOT>/fnix-lab-<run id>`. */
export const LAB_ROOT = '/tmp';
/** A run id: `fx` and 4 hex digits, short enough for interface names. */
export const RUN_ID = /^fx[0-9a-f]{4}$/;

/** Removes every dead lab; returns the run ids it removed. */
export async function sweepLeftovers(): Promise<string[]> {
  const swept: string[] = [];
  const records = new Map<string, LabRecord | undefined>();
  for (const entry of await readdir(LAB_ROOT)) {
    const runId = /^fnix-lab-(fx[0-9a-f]{4})$/.exec(entry)?.[1];
    if (!runId) continue;
    const text = await readFile(join(LAB_ROOT, entry, 'lab.json'), 'utf8').catch(() => undefined);
    records.set(runId, text ? (JSON.parse(text) as LabRecord) : undefined);
  }
  for (const [runId, record] of records) {
    if (record && stillRunning(record.owner)) continue;
    if (record) await sweepLab(record);
    else await removeNetwork(await namespacesOf(runId), runId);
    await rm(join(LAB_ROOT, `fnix-lab-${runId}`), { recursive: true, force: true });
    swept.push(runId);
  }
  // Namespaces of a lab whose folder is gone.
  for (const name of await allNamespaces()) {
    const runId = name.split('-')[0]!;
    if (RUN_ID.test(runId) && !records.has(runId) && !swept.includes(runId)) {
      await removeNetwork(await namespacesOf(runId), runId);
      swept.push(runId);
    }
  }
  return swept;
}

/** Kills what the dead lab `record` left, then removes its network. */
async function sweepLab(record: LabRecord): Promise<void> {
  for (const recorded of record.processes) {
    if (!stillRunning(recorded)) continue;
    try {
      process.kill(recorded.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  const ids: string[] = [];
  for (const dir of record.nodeDirs) {
    const found = await readdir(join(dir, 'containers/lib/storage/overlay-containers')).catch(() => [] as string[]);
    ids.push(...found.filter((name) => /^[0-9a-f]{64}$/.test(name)));
  }
  for (const pid of pidsOfContainers(ids)) kill(pid);
  const net = new Set<string>();
  for (const name of record.netns) {
    const id = await output(['stat', '-L', '-c', 'net:[%i]', `/run/netns/${name}`], { reject: false });
    if (id.startsWith('net:[')) net.add(id);
  }
  // conmon and sshfs run in the nodes' mount namespaces; everything else in the lab's network ones.
  for (const pid of pidsInNamespaces(net, new Set(record.mountNs ?? []))) kill(pid);
  await removeNetwork(record.netns, record.rootLink);
}

async function allNamespaces(): Promise<string[]> {
  return (await output(['ip', 'netns', 'list']))
    .split('\n')
    .map((line) => line.split(' ')[0]!)
    .filter(Boolean);
}

async function namespacesOf(runId: string): Promise<string[]> {
  return (await allNamespaces()).filter((name) => name.startsWith(`${runId}-`));
}

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}
