/**
 * @module
 * The cluster's secrets, in etcd: `secrets/<NAME>` holds `{setAt, nonce, ciphertext}`, the value
 * sealed by runtime/secrets/cipher.ts under FNIX_SECRETS_KEY with the name as associated data, as the
 * file store seals it. Every node keeps the ciphertexts in memory (mirror.ts) and decrypts a value only
 * when it is read, so reads are synchronous and a node cut off from etcd keeps serving the values it
 * had. A change made on any node reaches every node's mirror through its watch and fires `onChange`
 * there, so that rotation (runtime/secrets/rotation.ts) restarts the serve functions on every node.
 *
 * `secrets/.key-check` holds a fixed text sealed with the cluster's key (no secret can be named so:
 * names are upper-case): a node whose FNIX_SECRETS_KEY is another key stops at start, even when no
 * secret is set yet, instead of setting secrets the other nodes cannot read.
 */
import { Holds } from '../../runtime/secrets/holds.ts';
import type { Etcd3 } from 'etcd3';
import { FnixError } from '../../runtime/errors.ts';
import { SECRET_NAME_PATTERN } from '../../runtime/functions/manifest.ts';
import type { Logger } from '../../runtime/log.ts';
import { openValue, type SealedValue, SealError, sealValue } from '../../runtime/secrets/cipher.ts';
import type { SecretChange, SecretInfo, SecretStore } from '../../runtime/secrets/store.ts';
import type { ClusterKeys } from '../keys.ts';
import { PrefixMirror } from './mirror.ts';

/** The name under `secrets/` that holds the key check. */
export const KEY_CHECK_NAME = '.key-check';
const KEY_CHECK_TEXT = 'fnix secrets key check';

/** One `secrets/<NAME>` value. */
interface StoredSecret extends SealedValue {
  setAt: string;
}

/** Options of {@link EtcdSecretStore.open}. */
export interface EtcdSecretStoreOptions {
  client: Etcd3;
  keys: ClusterKeys;
  /** FNIX_SECRETS_KEY, decoded (32 bytes): the same on every node. */
  key: Buffer;
  log: Logger;
  /** The mirror's timings (tests shorten them). */
  mirror?: { checkMs?: number | undefined; timeoutMs?: number | undefined } | undefined;
}

/** The cluster's secrets, kept encrypted in etcd and mirrored in memory. */
export class EtcdSecretStore implements SecretStore {
  readonly #client: Etcd3;
  readonly #keys: ClusterKeys;
  readonly #key: Buffer;
  readonly #log: Logger;
  readonly #timeoutMs: number;
  readonly #mirror: PrefixMirror<StoredSecret>;
  readonly #listeners = new Set<(change: SecretChange) => void>();
  /**
   * Names a deployment being activated declares (by how many holds). Held on this node only: the
   * node that activates a deployment checks and holds its secrets, and a removal on another node
   * is refused when the live deployment declares the secret (gateway/routes/secrets.ts), which is the
   * same on every node. What is left is the moment of a push: a secret that only the deployment being
   * activated declares, removed on another node meanwhile, is missing there (503 SECRET_MISSING,
   * naming it) until it is set again.
   */
  readonly #held = new Holds();
  /** Names whose removal is being written: no longer listed nor `has`. */
  readonly #removing = new Set<string>();

  private constructor(options: EtcdSecretStoreOptions, mirror: PrefixMirror<StoredSecret>) {
    this.#client = options.client;
    this.#keys = options.keys;
    this.#key = options.key;
    this.#log = options.log;
    this.#timeoutMs = options.mirror?.timeoutMs ?? 5000;
    this.#mirror = mirror;
    mirror.onChange(({ name, value }) => {
      const change: SecretChange = { name, kind: value ? 'set' : 'removed' };
      for (const listener of this.#listeners) listener(change);
    });
  }

  /**
   * Reads every secret from etcd, then watches them. Throws SECRETS_KEY_INVALID when `key` is not the
   * cluster's (the key check, or every secret, does not decrypt with it), and CLUSTER_UNAVAILABLE when
   * etcd does not answer. A secret that alone does not decrypt (set by a node with another key, or
   * altered in etcd) is logged, naming it and the fix, and treated as unset.
   */
  static async open(options: EtcdSecretStoreOptions): Promise<EtcdSecretStore> {
    const { key, log, keys } = options;
    const failed: string[] = [];
    let opening = true;
    const mirror = await PrefixMirror.open<StoredSecret>({
      client: options.client,
      prefix: keys.secrets,
      what: 'secrets',
      log,
      checkMs: options.mirror?.checkMs,
      timeoutMs: options.mirror?.timeoutMs,
      // A value is 64 KiB at most, 90 KB sealed in base64: 32 a page stays under gRPC's 4 MiB.
      pageSize: 32,
      parse: (name, raw) => {
        if (name === KEY_CHECK_NAME) return undefined;
        const stored = parseStored(raw);
        if (!SECRET_NAME_PATTERN.test(name) || !stored) {
          log.error('a key under the secrets in etcd is not a secret fnix set: it is ignored; remove it with etcdctl del', { key: keys.secret(name) });
          return undefined;
        }
        try {
          openValue(key, name, stored).fill(0);
        } catch (error) {
          if (!(error instanceof SealError)) throw error;
          if (opening) failed.push(name);
          else undecryptable(log, keys, name);
          return undefined;
        }
        return stored;
      },
    });
    try {
      opening = false;
      // Every secret there failing says another key: the key check is then not made with this one.
      const wrongKey = failed.length > 0 && [...mirror.values()].length === 0;
      if ((await checkKey(options, !wrongKey)) === 'absent') {
        throw keyInvalid(keys, `none of the ${failed.length} secrets in etcd decrypts with this node's FNIX_SECRETS_KEY`, failed);
      }
      for (const name of failed) undecryptable(log, keys, name);
      return new EtcdSecretStore(options, mirror);
    } catch (error) {
      await mirror.close();
      throw error;
    }
  }

  list(): SecretInfo[] {
    return [...this.#mirror.values()]
      .filter(([name]) => !this.#removing.has(name))
      .map(([name, { setAt }]) => ({ name, setAt }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  has(name: string): boolean {
    return this.#mirror.get(name) !== undefined && !this.#removing.has(name);
  }

  value(name: string): Buffer | undefined {
    const stored = this.#mirror.get(name);
    if (!stored) return undefined;
    try {
      return openValue(this.#key, name, stored);
    } catch (error) {
      // Checked as it came in: not expected; unset rather than a failed invocation.
      if (!(error instanceof SealError)) throw error;
      undecryptable(this.#log, this.#keys, name);
      return undefined;
    }
  }

  /** Puts the sealed value; resolves once etcd has it and this node's mirror too (its listeners told). */
  async set(name: string, value: Uint8Array): Promise<SecretInfo> {
    checkName(name);
    const stored: StoredSecret = { setAt: new Date().toISOString(), ...sealValue(this.#key, name, value) };
    const response = await this.#call(`could not set the secret ${name}`, () =>
      this.#client.kv.put({ key: Buffer.from(this.#keys.secret(name)), value: Buffer.from(JSON.stringify(stored)) }, this.#deadline()),
    );
    await this.#mirror.waitFor(BigInt(response.header.revision), `the secret ${name} is set in etcd`);
    return { name, setAt: stored.setAt };
  }

  async remove(name: string): Promise<boolean> {
    checkName(name);
    if (this.#held.has(name)) {
      throw new FnixError(
        'SECRET_IN_USE',
        `the secret ${name} is declared by a deployment being activated: once it is live, deploy its functions without it, then remove it`,
        { details: { secret: name } },
      );
    }
    this.#removing.add(name);
    try {
      // Deleted in etcd even when this node has it as unset (a value that does not decrypt): that is how one is cleared.
      const response = await this.#call(`could not remove the secret ${name}`, () =>
        this.#client.kv.deleteRange({ key: Buffer.from(this.#keys.secret(name)) }, this.#deadline()),
      );
      if (Number(response.deleted) === 0) return false;
      await this.#mirror.waitFor(BigInt(response.header.revision), `the secret ${name} is removed from etcd`);
      return true;
    } finally {
      this.#removing.delete(name);
    }
  }

  hold(names: Iterable<string>): () => void {
    return this.#held.hold(names);
  }

  onChange(listener: (change: SecretChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** When the mirror was last known to hold what etcd holds (mirror.ts). */
  lastSyncAt(): Date | undefined {
    return this.#mirror.lastSyncAt();
  }

  /** Whether the watch on etcd is connected now (changes then arrive in milliseconds, else within the mirror's check). */
  watching(): boolean {
    return this.#mirror.watching();
  }

  /** Stops watching etcd; the values kept stay readable. */
  close(): Promise<void> {
    return this.#mirror.close();
  }

  #deadline(): { deadline: number } {
    return { deadline: Date.now() + this.#timeoutMs };
  }

  async #call<R>(what: string, call: () => Promise<R>): Promise<R> {
    try {
      return await call();
    } catch (error) {
      throw new FnixError(
        'CLUSTER_UNAVAILABLE',
        `${what}: etcd did not answer (${error instanceof Error ? error.message : String(error)}); it may or may not have been done: try again once etcd is up`,
        { cause: error },
      );
    }
  }
}

/**
 * Checks `key` against `secrets/.key-check`, making it when there is none and `mayMake`. Resolves
 * 'checked', 'made' or 'absent'; throws SECRETS_KEY_INVALID when it does not decrypt.
 */
async function checkKey(options: EtcdSecretStoreOptions, mayMake: boolean): Promise<'checked' | 'made' | 'absent'> {
  const { client, keys, key } = options;
  const timeoutMs = options.mirror?.timeoutMs ?? 5000;
  const at = keys.secret(KEY_CHECK_NAME);
  const sealed = JSON.stringify({ setAt: new Date().toISOString(), ...sealValue(key, KEY_CHECK_NAME, Buffer.from(KEY_CHECK_TEXT)) });
  let made = false;
  let existing: Buffer | undefined;
  try {
    if (mayMake) {
      const response = await client
        .if(at, 'Create', '==', 0)
        .then(client.put(at).value(sealed))
        .else(client.get(at))
        .options({ deadline: Date.now() + timeoutMs })
        .commit();
      made = response.succeeded;
      existing = response.responses[0]?.response_range?.kvs[0]?.value;
    } else {
      existing = (await client.kv.range({ key: Buffer.from(at) }, { deadline: Date.now() + timeoutMs })).kvs[0]?.value;
    }
  } catch (error) {
    throw new FnixError(
      'CLUSTER_UNAVAILABLE',
      `could not read the secrets key check from etcd (${error instanceof Error ? error.message : String(error)}): check that etcd is up and that FNIX_CLUSTER_ETCD names its client URLs`,
      { cause: error },
    );
  }
  if (made) return 'made';
  if (!existing) return 'absent';
  const stored = parseStored(existing);
  try {
    if (!stored) throw new SealError('the key check is not a sealed value');
    openValue(key, KEY_CHECK_NAME, stored).fill(0);
  } catch (error) {
    if (!(error instanceof SealError)) throw error;
    throw keyInvalid(keys, `the key check ${at} does not decrypt with this node's FNIX_SECRETS_KEY`, []);
  }
  return 'checked';
}

function keyInvalid(keys: ClusterKeys, why: string, secrets: string[]): FnixError {
  return new FnixError(
    'SECRETS_KEY_INVALID',
    `${why}: it is not the cluster's key. Every node of a cluster must have the same FNIX_SECRETS_KEY: ` +
      `set this node's to the one the other nodes have (if no node has it any more, delete ${keys.secrets} with etcdctl del --prefix and set every secret again)`,
    { details: { prefix: keys.secrets, secrets } },
  );
}

function undecryptable(log: Logger, keys: ClusterKeys, name: string): void {
  log.error(
    `the secret ${name} in etcd does not decrypt with this node's FNIX_SECRETS_KEY: it is treated as unset on this node. ` +
      'It was set by a node with another key (or altered in etcd): give every node the same FNIX_SECRETS_KEY, then set it again',
    { secret: name, key: keys.secret(name) },
  );
}

function checkName(name: string): void {
  if (!SECRET_NAME_PATTERN.test(name)) {
    throw new FnixError('SECRET_INVALID', 'secret names are upper-case letters, digits and underscores, such as "STRIPE_KEY"', {
      details: { secret: name.slice(0, 128) },
    });
  }
}

function parseStored(raw: Buffer): StoredSecret | undefined {
  let parsed: Partial<StoredSecret> | null;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof parsed?.setAt !== 'string' || typeof parsed.nonce !== 'string' || typeof parsed.ciphertext !== 'string') return undefined;
  return { setAt: parsed.setAt, nonce: parsed.nonce, ciphertext: parsed.ciphertext };
}
