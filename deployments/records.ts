/**
 * @module
 * The deployment history, in the state folder: one JSON record per deployment, and a `current` file
 * naming the active one. Every file is written to a temporary name, synced, and renamed over the old
 * one, so a `kill -9` at any moment leaves either the old file or the new one, never a torn one.
 */
import { open, readdir, readFile, rename, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { ErrorCode } from '../runtime/errors.ts';

/** One function of a deployment, as the record keeps it (and the admin API shows it). */
export interface DeployedFunction {
  name: string;
  version: string;
  packages: string[];
  /** The store path of each package, in the manifest's order: what a rollback or a restart serves again. */
  storePaths: string[];
  /** Names the GC roots that keep the packages' closure. */
  rootKey: string;
  command: string[];
  limits: { timeoutMs: number; memoryMb: number; network: boolean; sessionTimeoutMs: number; idleTimeoutMs: number };
}

/** A deployment: a commit that was checked, and either passed (ready) or was refused. */
export interface DeploymentRecord {
  id: string;
  commit: string;
  /** The commit's subject line. */
  subject: string;
  createdAt: string;
  /** `push`, or `import` (the functions folder, at first start). */
  source: 'push' | 'import';
  /** `ready` deployments can be activated; `refused` ones say why. */
  result: 'ready' | 'refused';
  reason?: string | undefined;
  /** The git blob id of the commit's packages.nix, when its functions' packages come from it (docs/deployments.md). */
  packageFile?: string | undefined;
  functions: DeployedFunction[];
  /** The import of a functions folder only: functions that failed their checks and are not served. */
  broken?: { name: string; code: ErrorCode; problem: string }[] | undefined;
  /** When it was made the active deployment, most recent last. */
  activations: string[];
}

/** What `current` holds. */
interface Current {
  id: string;
  activatedAt: string;
}

/** The records, in `<state>/deployments/`. */
export class DeploymentStore {
  readonly dir: string;
  /** Told of every record {@link save} wrote (a cluster keeps the history in etcd); not of {@link saveReplica}'s. */
  onSave: ((record: DeploymentRecord) => void) | undefined;
  /** Told of every record {@link remove} removed (the history pruned). */
  onRemove: ((id: string) => void) | undefined;

  constructor(dir: string) {
    this.dir = dir;
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    // Temporary files of writes that a crash interrupted.
    for (const name of await readdir(this.dir)) if (name.endsWith('.tmp')) await rm(join(this.dir, name), { force: true });
  }

  /** Writes (or rewrites) a record. */
  async save(record: DeploymentRecord): Promise<void> {
    await this.saveReplica(record);
    this.onSave?.(record);
  }

  /** Writes a record that came from elsewhere (another node of a cluster), telling no {@link onSave}. */
  async saveReplica(record: DeploymentRecord): Promise<void> {
    if (!/^d-[\w-]+$/.test(record.id)) throw new TypeError(`not a deployment id: ${JSON.stringify(record.id)}`);
    await writeAtomically(join(this.dir, `${record.id}.json`), `${JSON.stringify(record, null, 2)}\n`);
  }

  async get(id: string): Promise<DeploymentRecord | undefined> {
    if (!/^d-[\w-]+$/.test(id)) return undefined;
    const text = await readFile(join(this.dir, `${id}.json`), 'utf8').catch(() => undefined);
    return text === undefined ? undefined : (JSON.parse(text) as DeploymentRecord);
  }

  /** Every record, newest first. */
  async list(): Promise<DeploymentRecord[]> {
    const names = (await readdir(this.dir)).filter((name) => /^d-[\w-]+\.json$/.test(name));
    const records = await Promise.all(names.map((name) => this.get(name.slice(0, -'.json'.length))));
    return records.filter((r): r is DeploymentRecord => r !== undefined).sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
  }

  /** The active deployment's id, if any. */
  async current(): Promise<string | undefined> {
    const text = await readFile(join(this.dir, 'current'), 'utf8').catch(() => undefined);
    return text === undefined ? undefined : (JSON.parse(text) as Current).id;
  }

  /**
   * Makes `record` the active deployment: `current` names it, then its record gains the activation.
   * `current` alone says which deployment is active; should the second write fail (a full disk), the
   * record lacks this activation's time, which it returns as false, and nothing else is wrong.
   */
  async activate(record: DeploymentRecord, at: Date): Promise<boolean> {
    // The switch itself: one rename. Before it the old deployment is active, after it the new one.
    await writeAtomically(join(this.dir, 'current'), `${JSON.stringify({ id: record.id, activatedAt: at.toISOString() } satisfies Current)}\n`);
    record.activations.push(at.toISOString());
    return this.save(record).then(
      () => true,
      () => false,
    );
  }

  /** Removes a record (history beyond its limit). */
  async remove(id: string): Promise<void> {
    await rm(join(this.dir, `${id}.json`), { force: true });
    this.onRemove?.(id);
  }
}

/** Writes `path` through a synced temporary file and a rename, then syncs the folder. */
async function writeAtomically(path: string, content: string): Promise<void> {
  const temporary = `${path}.${process.pid}.tmp`;
  try {
    const file = await open(temporary, 'w', 0o600);
    try {
      await file.writeFile(content);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true }).catch(() => {});
    throw error;
  }
  const dir = await open(join(path, '..'), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
