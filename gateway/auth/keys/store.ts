/**
 * @module
 * What keeps invoke keys: create, list, revoke, verify, and a change callback. The one implementation
 * today is a file in the state folder (file-store.ts); issue 18 keeps keys in etcd behind the same
 * interface, where the callback reports what other gateways changed.
 */

/** A key as the API shows it: never its text, never its hash. */
export interface KeyInfo {
  /** The key's id, the part of its text between `fnixk_` and the secret. */
  id: string;
  /** What the operator called it, or null. */
  name: string | null;
  /** The one function it opens, or null for every function. */
  function: string | null;
  /** ISO time. */
  createdAt: string;
  /** ISO time of the last request it let in (flushed to the store now and then), or null. */
  lastUsedAt: string | null;
}

/** A key just made: its info and its whole text, shown this once. */
export interface CreatedKey extends KeyInfo {
  key: string;
}

/** What a new key is made with. */
export interface KeyRequest {
  name?: string | null | undefined;
  /** A function name, or null/undefined for every function. */
  function?: string | null | undefined;
}

/** A change of the keys: one made or one revoked (by this gateway, or, with a shared store, another). */
export type KeyChange = { type: 'created'; key: KeyInfo } | { type: 'revoked'; key: KeyInfo };

/** The keys. */
export interface KeyStore {
  /** Makes a key and keeps its hash; resolves once it is kept for good. */
  create(request: KeyRequest): Promise<CreatedKey>;
  /** Every key, oldest first. */
  list(): KeyInfo[];
  /** Revokes a key: refused from the next request on. Throws KEY_NOT_FOUND for an id it does not have. */
  revoke(id: string): Promise<KeyInfo>;
  /**
   * The key that `text` is, when it is one and it opens `functionName`; `'wrong'` for text that is no
   * key (or a revoked one), `'scope'` for a key of another function. Compares in constant time, and
   * notes the key's use.
   */
  verify(text: string, functionName: string): { ok: true; key: KeyInfo } | { ok: false; why: 'wrong' | 'scope'; keyId?: string };
  /** Calls `listener` after each change; returns what stops it. */
  onChange(listener: (change: KeyChange) => void): () => void;
  /** Writes the uses not yet written, and stops writing them now and then. */
  close(): Promise<void>;
}
