/**
 * @module
 * The secret store of one gateway: `<stateDir>/secrets.json` holds `{name: {setAt, nonce, ciphertext}}`,
 * each value sealed by cipher.ts under the key from key.ts, rewritten atomically (mode 0600) on every
 * change. The ciphertexts are kept in memory; a value is decrypted only when it is read.
 */
import { Holds } from './holds.ts';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FnixError } from '../errors.ts';
import { removeTemporaries, writeFileAtomic } from './atomic-file.ts';
import { openValue, type SealedValue, SealError, sealValue } from './cipher.ts';
import { loadSecretsKey, SECRETS_KEY_FILE, type SecretsKey } from './key.ts';
import type { SecretChange, SecretInfo, SecretStore } from './store.ts';

/** The ciphertexts' file in the state folder. */
export const SECRETS_FILE = 'secrets.json';

/** One entry of secrets.json. */
interface StoredSecret extends SealedValue {
  setAt: string;
}

/** Options of {@link FileSecretStore.open}. */
export interface FileSecretStoreOptions {
  /** The state folder: secrets.json and (without `key`) secrets.key are there. */
  stateDir: string;
  /** FNIX_SECRETS_KEY, decoded. @default the key file in the state folder, made at first start */
  key?: Buffer | undefined;
}

/** Secrets in the state folder, encrypted. */
export class FileSecretStore implements SecretStore {
  readonly file: string;
  /** Where the key came from (never the key). */
  readonly keySource: SecretsKey['source'];
  readonly #key: Buffer;
  readonly #entries: Map<string, StoredSecret>;
  readonly #listeners = new Set<(change: SecretChange) => void>();
  /** Names a deployment being activated declares (by how many holds): {@link remove} refuses them. */
  readonly #held = new Holds();
  /** Names whose removal is being written: no longer listed nor `has`, so that nothing starts to depend on them. */
  readonly #removing = new Set<string>();
  /** Writes one after the other, so that the file always ends as the last change left it. */
  #writes: Promise<void> = Promise.resolve();

  private constructor(file: string, key: SecretsKey, entries: Map<string, StoredSecret>) {
    this.file = file;
    this.keySource = key.source;
    this.#key = key.key;
    this.#entries = entries;
  }

  /**
   * Opens the store, making the key at first start. Throws SECRETS_KEY_INVALID when the secrets kept
   * do not decrypt with the key (another key, or a damaged file), naming the fix.
   */
  static async open(options: FileSecretStoreOptions): Promise<FileSecretStore> {
    const file = join(options.stateDir, SECRETS_FILE);
    // What a process killed between writing a temporary file and renaming it left (the store is
    // opened once the state folder is this process's: no other writes there).
    await removeTemporaries(file);
    await removeTemporaries(join(options.stateDir, SECRETS_KEY_FILE));
    const key = await loadSecretsKey(options.stateDir, options.key);
    const entries = await readEntries(file);
    const failed: string[] = [];
    for (const [name, entry] of entries) {
      try {
        openValue(key.key, name, entry).fill(0);
      } catch (error) {
        if (!(error instanceof SealError)) throw error;
        failed.push(name);
      }
    }
    if (failed.length > 0) {
      const which = failed.length === entries.size ? `none of its ${entries.size} secrets decrypts` : `${failed.join(', ')} do not decrypt`;
      throw new FnixError(
        'SECRETS_KEY_INVALID',
        `${file}: ${which} with the key from ${key.where}: it is not the key they were set with, or the file was altered. ` +
          `Restore the key they were set with (${join(options.stateDir, 'secrets.key')}, or FNIX_SECRETS_KEY), ` +
          `or move ${file} away and set every secret again with \`fnix secret set NAME\``,
        { details: { file, secrets: failed } },
      );
    }
    return new FileSecretStore(file, key, entries);
  }

  list(): SecretInfo[] {
    return [...this.#entries]
      .filter(([name]) => !this.#removing.has(name))
      .map(([name, { setAt }]) => ({ name, setAt }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  has(name: string): boolean {
    return this.#entries.has(name) && !this.#removing.has(name);
  }

  value(name: string): Buffer | undefined {
    const entry = this.#entries.get(name);
    return entry && openValue(this.#key, name, entry);
  }

  async set(name: string, value: Uint8Array): Promise<SecretInfo> {
    const entry: StoredSecret = { setAt: new Date().toISOString(), ...sealValue(this.#key, name, value) };
    await this.#change(name, entry);
    return { name, setAt: entry.setAt };
  }

  async remove(name: string): Promise<boolean> {
    if (!this.has(name)) return false;
    if (this.#held.has(name)) {
      throw new FnixError(
        'SECRET_IN_USE',
        `the secret ${name} is declared by a deployment being activated: once it is live, deploy its functions without it, then remove it`,
        { details: { secret: name } },
      );
    }
    this.#removing.add(name);
    try {
      await this.#change(name, undefined);
    } finally {
      this.#removing.delete(name);
    }
    return true;
  }

  hold(names: Iterable<string>): () => void {
    return this.#held.hold(names);
  }

  onChange(listener: (change: SecretChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Applies one change: the file first (durably), then memory, then the listeners. */
  async #change(name: string, entry: StoredSecret | undefined): Promise<void> {
    const write = this.#writes.then(async () => {
      const next = new Map(this.#entries);
      if (entry) next.set(name, entry);
      else next.delete(name);
      await writeFileAtomic(this.file, `${JSON.stringify(Object.fromEntries(next), null, 2)}\n`, 0o600);
      if (entry) this.#entries.set(name, entry);
      else this.#entries.delete(name);
    });
    this.#writes = write.catch(() => {});
    await write;
    for (const listener of this.#listeners) listener({ name, kind: entry ? 'set' : 'removed' });
  }
}

/** The entries of secrets.json; none when it does not exist. */
async function readEntries(file: string): Promise<Map<string, StoredSecret>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw damaged(file, 'it is not JSON', error);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw damaged(file, 'it is not an object of secrets');
  const entries = new Map<string, StoredSecret>();
  for (const [name, value] of Object.entries(parsed)) {
    const entry = value as Partial<StoredSecret> | null;
    if (typeof entry?.setAt !== 'string' || typeof entry.nonce !== 'string' || typeof entry.ciphertext !== 'string') {
      throw damaged(file, `its entry ${JSON.stringify(name.slice(0, 80))} lacks setAt, nonce or ciphertext`);
    }
    entries.set(name, { setAt: entry.setAt, nonce: entry.nonce, ciphertext: entry.ciphertext });
  }
  return entries;
}

function damaged(file: string, why: string, cause?: unknown): FnixError {
  return new FnixError('SECRETS_KEY_INVALID', `${file} cannot be read: ${why}; restore it from a backup, or move it away and set every secret again`, {
    details: { file },
    cause,
  });
}
