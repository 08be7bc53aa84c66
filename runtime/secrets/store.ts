/**
 * @module
 * What fnix asks of a secret store: names with the time each was set, values set, removed and read
 * (decrypted only when read), and a callback on every change. file-store.ts keeps them in the state
 * folder; a cluster keeps them elsewhere (issue 18) behind the same interface.
 */

/** A secret as it may be shown: never its value. */
export interface SecretInfo {
  name: string;
  /** ISO time of the last set. */
  setAt: string;
}

/** One change: a value set (first time or rotated), or a secret removed. */
export interface SecretChange {
  name: string;
  kind: 'set' | 'removed';
}

/** The values a runtime reads when it starts a function (a store is one). */
export interface SecretValues {
  /** The value of `name`, decrypted now; undefined when it is not set. The caller should drop it soon. */
  value(name: string): Buffer | undefined;
}

/** Secrets, kept encrypted. */
export interface SecretStore extends SecretValues {
  /** Every secret, by name. */
  list(): SecretInfo[];
  /** Whether `name` is set (a secret whose removal is being written no longer is). */
  has(name: string): boolean;
  /** Sets (or replaces) `name`; resolves once it is durable, after the change listeners were told. */
  set(name: string, value: Uint8Array): Promise<SecretInfo>;
  /**
   * Removes `name`; resolves with false when it was not set. Throws SECRET_IN_USE, at the call, when
   * `name` is held ({@link hold}). From the call on, `has` and `list` no longer show it.
   */
  remove(name: string): Promise<boolean>;
  /**
   * Holds `names` until the returned function is called: {@link remove} refuses them meanwhile. A
   * deployment being activated holds the secrets it declares from its check to its switch, so that
   * none is removed in between (deployments/activate.ts).
   */
  hold(names: Iterable<string>): () => void;
  /** Calls `listener` after every change (synchronously, before set or remove resolves); returns an unsubscribe. */
  onChange(listener: (change: SecretChange) => void): () => void;
}
