/**
 * @module
 * The binary cache (for hosts without a shared filesystem): the builder signs each deployment's closures
 * into a file binary cache in its state folder (`nix copy --to file://…?secret-key=…`, zstd), which its
 * gateway serves at `/cluster/cache/`; every node substitutes the paths it lacks from there, checking the
 * signatures against FNIX_CACHE_PUBLIC_KEY. Paths already in a node's store are not fetched again.
 */
import { mkdir } from 'node:fs/promises';
import { execa } from 'execa';
import { FnixError } from '../../runtime/errors.ts';
import type { Publication, StoreTransport, TakeSource, Taken } from './transport.ts';
import { invalidPaths } from './transport.ts';

/** Where the gateway serves a builder's cache. */
export const CACHE_PATH = '/cluster/cache';

/** Options of {@link BinaryCacheStore}. */
export interface BinaryCacheStoreOptions {
  /** The cache's folder (`<state>/cluster/cache`). */
  cacheDir: string;
  /** FNIX_CACHE_SECRET_KEY_FILE: needed to publish. */
  secretKeyFile: string | undefined;
  /** FNIX_CACHE_PUBLIC_KEY. */
  publicKey: string;
}

export class BinaryCacheStore implements StoreTransport {
  readonly mode = 'cache' as const;
  readonly cacheDir: string;
  readonly #secretKeyFile: string | undefined;
  readonly #publicKey: string;

  constructor(options: BinaryCacheStoreOptions) {
    this.cacheDir = options.cacheDir;
    this.#secretKeyFile = options.secretKeyFile;
    this.#publicKey = options.publicKey;
  }

  async publish(closure: readonly string[]): Promise<Publication> {
    if (!this.#secretKeyFile)
      throw new FnixError('STORE_UNAVAILABLE', 'this node has no FNIX_CACHE_SECRET_KEY_FILE, so it cannot sign a binary cache; only builders can');
    if (closure.length === 0) return {};
    await mkdir(this.cacheDir, { recursive: true, mode: 0o755 });
    const to = `file://${this.cacheDir}?compression=zstd&secret-key=${this.#secretKeyFile}`;
    const copied = await execa('nix', ['--extra-experimental-features', 'nix-command', 'copy', '--to', to, ...closure], {
      reject: false,
      timeout: 600_000,
      stdin: 'ignore',
    });
    if (copied.exitCode !== 0) throw new FnixError('STORE_UNAVAILABLE', `nix copy into the binary cache failed: ${lastLine(copied.stderr)}`);
    return {};
  }

  async take(closure: readonly string[], source: TakeSource): Promise<Taken> {
    const begin = performance.now();
    const invalid = await invalidPaths(closure);
    if (invalid.length === 0) return { added: 0, refreshed: false, ms: performance.now() - begin };
    if (!source.builderUrl)
      throw new FnixError('STORE_UNAVAILABLE', `${invalid.length} store path(s) are missing here and no builder is elected to substitute them from`);
    const from = `${source.builderUrl}${CACHE_PATH}`;
    const realised = await execa(
      'nix-store',
      [
        '--realise',
        ...invalid,
        '--option',
        'substituters',
        from,
        '--option',
        'trusted-public-keys',
        this.#publicKey,
        '--option',
        'require-sigs',
        'true',
        '--option',
        'builders',
        '',
        '--option',
        'connect-timeout',
        '5',
      ],
      { reject: false, timeout: 600_000, stdin: 'ignore' },
    );
    if (realised.exitCode !== 0) {
      throw new FnixError('STORE_UNAVAILABLE', `substituting ${invalid.length} store path(s) from ${from} failed: ${lastLine(realised.stderr)}`, {
        details: { missing: invalid.slice(0, 20) },
      });
    }
    return { added: invalid.length, refreshed: false, ms: performance.now() - begin };
  }
}

function lastLine(text: unknown): string {
  return String(text).trim().split('\n').at(-1) ?? '';
}
