/**
 * @module
 * The live deployment: one etcd key, `live`, that says which deployment every node serves. It changes
 * only by compare-and-swap on its modification revision, as Kubernetes' controllers update an object
 * with its resourceVersion: a push or a rollback made against an older live deployment fails instead of
 * overwriting a change it did not see. Nodes watch it, and read it again every few seconds besides, so
 * that a watch lost during a partition cannot leave a node behind for good.
 */
import type { Etcd3, Watcher } from 'etcd3';
import type { Logger } from '../runtime/log.ts';
import { withDeadline } from './etcd.ts';
import type { ClusterKeys } from './keys.ts';

/** What `live` holds. */
export interface LiveDeployment {
  deployment: string;
  commit: string;
  /** The node that made it live, and where its repository is (the commit is fetched from there). */
  by: string;
  byUrl: string;
  at: string;
}

/** The key's value and its modification revision (`'0'` while it was never set). */
export interface LiveState {
  value: LiveDeployment | undefined;
  revision: string;
}

/** How often the key is read again, whatever the watch says. */
const REREAD_MS = 2000;

export class LiveKey {
  readonly #client: Etcd3;
  readonly #key: string;
  readonly #log: Logger;
  #watcher: Watcher | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: { client: Etcd3; keys: ClusterKeys; log: Logger }) {
    this.#client = options.client;
    this.#key = options.keys.live;
    this.#log = options.log;
  }

  async read(): Promise<LiveState> {
    const response = await withDeadline('reading the live deployment', this.#client.get(this.#key).exec());
    const kv = response.kvs[0];
    if (!kv) return { value: undefined, revision: '0' };
    return { value: JSON.parse(kv.value.toString('utf8')) as LiveDeployment, revision: String(kv.mod_revision) };
  }

  /**
   * Sets the key to `next` if its revision is still `expected` (`'0'`: never set). Resolves with the new
   * revision, or with what the key holds now when another change came first.
   */
  async swap(expected: string, next: LiveDeployment): Promise<{ swapped: true; revision: string } | { swapped: false; now: LiveState }> {
    const compare = expected === '0' ? this.#client.if(this.#key, 'Create', '==', 0) : this.#client.if(this.#key, 'Mod', '==', expected);
    const result = await withDeadline('changing the live deployment', compare.then(this.#client.put(this.#key).value(JSON.stringify(next))).commit());
    if (result.succeeded) return { swapped: true, revision: String(result.header.revision) };
    return { swapped: false, now: await this.read() };
  }

  /** Calls `onState` with the key's state at every change the watch or a re-read finds (repeats are the caller's to skip). */
  async follow(onState: (state: LiveState) => void): Promise<void> {
    // A failed re-read is the stale view /healthz reports (membership.ts); the next one tries again.
    let reading = false;
    const reread = () => {
      if (reading) return;
      reading = true;
      this.read()
        .then(onState, () => {})
        .finally(() => {
          reading = false;
        });
    };
    this.#timer = setInterval(reread, REREAD_MS);
    this.#timer.unref();
    try {
      const watcher = await withDeadline('watching the live deployment', this.#client.watch().key(this.#key).create());
      this.#watcher = watcher;
      watcher.on('put', () => this.read().then(onState, () => {}));
      watcher.on('delete', () => this.read().then(onState, () => {}));
      watcher.on('error', (error) => this.#log.warn('the watch of the live deployment failed; re-reading it every few seconds', { error: error.message }));
    } catch (error) {
      this.#log.warn('the live deployment could not be watched; re-reading it every few seconds', { error: (error as Error).message });
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#watcher?.cancel().catch(() => {});
  }
}
