/**
 * @module
 * What a change of secret does to what is running. An invocation reads its secrets when it starts
 * (delivery.ts), so a new value reaches the next one without a push; a serve function's server read
 * its own at its start, so the served serve functions that declare the secret are restarted
 * (ServeInstances.restart: new instances ready before the old ones drain). Driven by the store's change
 * callback, so that a change made elsewhere (another node of a cluster) does the same.
 */
import type { FunctionRegistry } from '../functions/registry.ts';
import type { Logger } from '../log.ts';
import type { ServeInstances } from '../serve/instances.ts';
import { functionsDeclaring } from './delivery.ts';
import type { SecretStore } from './store.ts';

/** A restart a change started. */
export interface Restart {
  /** The functions restarted. */
  functions: string[];
  /** Resolves once the new instances took over (or failed to start: see ServeInstances.restart). */
  done: Promise<string[]>;
}

/** Options of {@link SecretRotation}. */
export interface SecretRotationOptions {
  store: Pick<SecretStore, 'onChange'>;
  registry: Pick<FunctionRegistry, 'versions'>;
  instances: Pick<ServeInstances, 'restart'>;
  log: Logger;
}

/** Restarts serve functions when a secret they declare is set. */
export class SecretRotation {
  readonly #options: SecretRotationOptions;
  /** The last restart of each secret's change, for the caller that made it. */
  readonly #latest = new Map<string, Restart>();
  readonly #unsubscribe: () => void;

  constructor(options: SecretRotationOptions) {
    this.#options = options;
    this.#unsubscribe = options.store.onChange((change) => {
      if (change.kind === 'set') this.#restart(change.name);
    });
  }

  /** The restart the last change of `name` started; undefined when none did. */
  latest(name: string): Restart | undefined {
    return this.#latest.get(name);
  }

  close(): void {
    this.#unsubscribe();
  }

  #restart(name: string): void {
    const served = this.#options.registry.versions().filter((fn) => fn.manifest.serve);
    const functions = functionsDeclaring(served, name);
    if (functions.length === 0) {
      this.#latest.delete(name);
      return;
    }
    const done = this.#options.instances.restart(functions, `the secret ${name} changed`).catch((error: unknown) => {
      this.#options.log.error('restarting instances after a secret changed failed', { secret: name, error: (error as Error).message });
      return [];
    });
    const restart: Restart = { functions, done };
    this.#latest.set(name, restart);
    void done.then(() => {
      if (this.#latest.get(name) === restart) this.#latest.delete(name);
    });
  }
}
