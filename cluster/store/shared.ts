/**
 * @module
 * The shared store (the seed's design): the builder's store paths are copied into an export, a folder
 * that a network filesystem serves (NFS in production, sshfs in the tests). Every node mounts that export
 * read-only as the lower layer of an overlay on its /nix/store, with a local writable upper layer, so that
 * no node keeps a full copy and nothing a node writes reaches the others.
 *
 * Publishing copies each missing path under a temporary name and renames it into place, so that a node
 * never sees half a path; paths are immutable, so one already there is never copied again. The nodes'
 * Nix databases learn of the paths from the registration the builder dumps (`nix-store --dump-db`), as a
 * netbooted NixOS host loads its store's registration at boot.
 *
 * A path that a node looked up before it existed stays missing in its overlay (the kernel keeps the
 * negative lookup): taking a closure checks each path, and when one is missing, the overlay is remounted
 * (which drops those lookups); when paths are still missing, the kernel's dentry cache is dropped, and
 * they are checked once more.
 */
import { randomBytes } from 'node:crypto';
import { lstat, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { execa } from 'execa';
import { FnixError } from '../../runtime/errors.ts';
import type { Publication, StoreTransport, TakeSource, Taken } from './transport.ts';
import { invalidPaths } from './transport.ts';

/** Options of {@link SharedStore}. */
export interface SharedStoreOptions {
  /** FNIX_STORE_EXPORT: the builder's read-write mount of the export (undefined on nodes that cannot build). */
  exportDir: string | undefined;
  /** The store the nodes see: `/nix/store`. */
  storeDir?: string;
  /** How the overlay is refreshed; the default remounts it. */
  refresh?: ((storeDir: string) => Promise<void>) | undefined;
  /** Whether the kernel's dentry cache (machine-wide) is dropped when a remount was not enough. @default true */
  dropCaches?: boolean | undefined;
}

export class SharedStore implements StoreTransport {
  readonly mode = 'shared' as const;
  readonly #exportDir: string | undefined;
  readonly #storeDir: string;
  readonly #refresh: (storeDir: string) => Promise<void>;
  readonly #dropCaches: boolean;

  constructor(options: SharedStoreOptions) {
    this.#exportDir = options.exportDir;
    this.#storeDir = options.storeDir ?? '/nix/store';
    this.#refresh = options.refresh ?? refreshOverlay;
    this.#dropCaches = options.dropCaches ?? true;
  }

  async publish(closure: readonly string[]): Promise<Publication> {
    const exportDir = this.#exportDir;
    if (!exportDir) throw new FnixError('STORE_UNAVAILABLE', 'this node has no FNIX_STORE_EXPORT, so it cannot publish store paths; only builders can');
    for (const path of closure) {
      const name = basename(path);
      if (await exists(join(exportDir, name))) continue;
      const temporary = join(exportDir, `.fnix-tmp-${name}-${randomBytes(4).toString('hex')}`);
      try {
        await execa('cp', ['-a', '--', path, temporary], { timeout: 600_000, stdin: 'ignore' });
        await rename(temporary, join(exportDir, name));
      } catch (error) {
        await rm(temporary, { recursive: true, force: true }).catch(() => {});
        // Another publisher (an earlier builder) may have put it there meanwhile.
        if (await exists(join(exportDir, name))) continue;
        throw new FnixError('STORE_UNAVAILABLE', `${path} could not be copied into the store export ${exportDir}: ${describe(error)}`, { cause: error });
      }
    }
    const dump = await execa('nix-store', ['--dump-db', ...closure], { timeout: 60_000, stdin: 'ignore' });
    return { registration: String(dump.stdout) };
  }

  async take(closure: readonly string[], source: TakeSource): Promise<Taken> {
    const begin = performance.now();
    // Every path must be there, valid or not: a node's database may list a path its overlay does not show
    // (a store seeded without it), and a path may be hidden by a cached negative lookup.
    let missing = await this.#missing(closure);
    let refreshed = false;
    if (missing.length > 0) {
      refreshed = true;
      await this.#refresh(this.#storeDir);
      missing = await this.#missing(closure);
    }
    if (missing.length > 0 && this.#dropCaches) {
      // A lower layer that caches negative lookups of its own (NFS's attribute cache) outlives a remount.
      await dropDentries();
      missing = await this.#missing(closure);
    }
    if (missing.length > 0) {
      throw new FnixError(
        'STORE_UNAVAILABLE',
        `${missing.length} store path(s) of the deployment are not in this node's /nix/store, such as ${missing[0]}: is the store export mounted under the overlay, and did the builder publish them?`,
        { details: { missing: missing.slice(0, 20) } },
      );
    }
    const invalid = await invalidPaths(closure);
    if (invalid.length === 0) return { added: 0, refreshed, ms: performance.now() - begin };
    const registration = selectRegistration(source.publication.registration ?? '', new Set(invalid));
    if (registration.count < invalid.length) {
      throw new FnixError('STORE_UNAVAILABLE', `the builder's registration of the deployment lacks ${invalid.length - registration.count} of its store paths`);
    }
    await execa('nix-store', ['--load-db'], { input: registration.text, timeout: 60_000 });
    const still = await invalidPaths(invalid);
    if (still.length > 0) throw new FnixError('STORE_UNAVAILABLE', `${still[0]} is still not valid after loading the builder's registration`);
    return { added: invalid.length, refreshed, ms: performance.now() - begin };
  }

  async #missing(paths: readonly string[]): Promise<string[]> {
    const found = await Promise.all(paths.map((path) => exists(join(this.#storeDir, basename(path)))));
    return paths.filter((_, i) => !found[i]);
  }
}

/**
 * The registration's blocks for `wanted` only (the format of `nix-store --dump-db`: a path, its hash, its
 * size, its deriver, the number of references, then each reference, a line each), and how many.
 */
export function selectRegistration(text: string, wanted: ReadonlySet<string>): { text: string; count: number } {
  const lines = text.split('\n');
  const out: string[] = [];
  let count = 0;
  let i = 0;
  while (i + 4 < lines.length && lines[i] !== '') {
    const references = Number(lines[i + 4]);
    if (!Number.isInteger(references) || references < 0) throw new FnixError('STORE_UNAVAILABLE', "the builder's registration of the store paths is malformed");
    const block = lines.slice(i, i + 5 + references);
    if (wanted.has(lines[i]!)) {
      out.push(...block);
      count += 1;
    }
    i += 5 + references;
  }
  return { text: out.length > 0 ? `${out.join('\n')}\n` : '', count };
}

/** Drops the overlay's cached negative lookups: a remount (which keeps the mount's options and its users). */
export async function refreshOverlay(storeDir: string): Promise<void> {
  const remount = await execa('mount', ['-o', 'remount', storeDir], { reject: false, timeout: 30_000, stdin: 'ignore' });
  if (remount.exitCode !== 0) throw new FnixError('STORE_UNAVAILABLE', `the overlay on ${storeDir} could not be remounted: ${String(remount.stderr).trim()}`);
}

/** The kernel's unused dentries and inodes dropped (machine-wide, and cheap: nothing is written back). */
async function dropDentries(): Promise<void> {
  await writeFile('/proc/sys/vm/drop_caches', '2\n').catch((error: unknown) => {
    throw new FnixError('STORE_UNAVAILABLE', `the kernel's dentry cache could not be dropped: ${describe(error)}`);
  });
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

function describe(error: unknown): string {
  const e = error as { shortMessage?: string; message?: string; stderr?: unknown };
  return String(e.stderr || e.shortMessage || e.message || error).trim();
}
