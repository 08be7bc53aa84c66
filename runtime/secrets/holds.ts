/**
 * @module
 * The holds on secrets (SecretStore.hold): a count per name, so that two activations holding one secret
 * release it only when both are done. Every store keeps its holds with one of these.
 */

/** Counted holds on names. */
export class Holds {
  readonly #counts = new Map<string, number>();

  /** Whether `name` is held now. */
  has(name: string): boolean {
    return this.#counts.has(name);
  }

  /** Holds `names` until the returned function is called (once; later calls do nothing). */
  hold(names: Iterable<string>): () => void {
    const held = [...new Set(names)];
    for (const name of held) this.#counts.set(name, (this.#counts.get(name) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const name of held) {
        const count = (this.#counts.get(name) ?? 1) - 1;
        if (count > 0) this.#counts.set(name, count);
        else this.#counts.delete(name);
      }
    };
  }
}
