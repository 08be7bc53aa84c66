/**
 * @module
 * Runs a function version: takes a container from the pool, starts the invocation in it, and gives the
 * container back when the agent has cleaned up. This is the seam the gateway's HTTP route and WebSocket
 * sessions share.
 */
import type { FunctionVersion } from './functions/version.ts';
import type { Invocation } from './invocation/invocation.ts';
import type { Lease, Pool } from './pool/pool.ts';
import { deliverSecrets } from './secrets/delivery.ts';
import { secretMask } from './secrets/mask.ts';
import type { SecretValues } from './secrets/store.ts';

/** Where a function's processes run: its files are at /fn, which is also the working directory. */
export const FUNCTION_DIR = '/fn';

/**
 * The environment a function's command runs with: its packages' variables, its manifest's, the
 * request's (`env`), then what fnix sets itself (`own`), which nothing before may override.
 */
export function functionEnv(fn: FunctionVersion, env: Readonly<Record<string, string>>, own: Readonly<Record<string, string>>): Record<string, string> {
  return {
    ...fn.packageEnv,
    ...fn.manifest.env,
    ...env,
    PATH: fn.resolution.binPath,
    HOME: '/tmp',
    TMPDIR: '/tmp',
    FNIX_FUNCTION: fn.name,
    ...own,
  };
}

/** One request to run a function. */
export interface InvokeRequest {
  fn: FunctionVersion;
  /** The invocation id, also given to the command as FNIX_INVOCATION_ID. */
  id: string;
  /** Variables describing the request (CGI variables, FNIX_SESSION...). The manifest's env is added. */
  env: Readonly<Record<string, string>>;
  /** Overrides the manifest's timeoutMs (sessions run for the manifest's sessionTimeoutMs). */
  timeoutMs?: number | undefined;
  /** Run on a pseudo-terminal of this size. */
  tty?: { cols: number; rows: number } | undefined;
  /** Aborting it cancels the wait for a container, or kills the invocation. */
  signal?: AbortSignal | undefined;
}

/** A started invocation and the container lease behind it. */
export interface StartedInvocation {
  invocation: Invocation;
  lease: Lease;
}

/** Runs functions. */
export interface Runner {
  invoke(request: InvokeRequest): Promise<StartedInvocation>;
}

/** Options for {@link PoolRunner}. */
export interface PoolRunnerOptions {
  pool: Pool;
  /** stdout plus stderr bytes an invocation may write. */
  maxOutputBytes: number;
  /** Where the secrets functions declare are read, at each invocation (runtime/secrets/). @default none: a function declaring one gets SECRET_MISSING */
  secrets?: SecretValues | undefined;
}

/** The Runner that uses the Podman container pool. */
export class PoolRunner implements Runner {
  readonly #pool: Pool;
  readonly #maxOutputBytes: number;
  readonly #secrets: SecretValues | undefined;

  constructor(options: PoolRunnerOptions) {
    this.#pool = options.pool;
    this.#maxOutputBytes = options.maxOutputBytes;
    this.#secrets = options.secrets;
  }

  async invoke(request: InvokeRequest): Promise<StartedInvocation> {
    const { fn } = request;
    // Read now, before a container is taken: a rotation takes effect at the next invocation, and a
    // missing secret (SECRET_MISSING) costs no container.
    const secrets = deliverSecrets(fn, this.#secrets);
    let lease: Lease;
    try {
      lease = await this.#pool.acquire(fn, { signal: request.signal });
    } catch (error) {
      for (const file of secrets.files) file.data.fill(0);
      throw error;
    }
    const env = functionEnv(fn, request.env, { ...secrets.env, FNIX_INVOCATION_ID: request.id });
    // Copies of the values, to mask them in what is kept of its output (runtime/secrets/mask.ts).
    const mask = secretMask(secrets.files);
    let started: ReturnType<typeof lease.container.invoke>;
    try {
      started = lease.container.invoke({
        id: request.id,
        functionName: fn.name,
        spawn: { argv: fn.manifest.command, env, cwd: FUNCTION_DIR, tty: request.tty, files: secrets.files },
        mask,
        timeoutMs: request.timeoutMs ?? fn.manifest.timeoutMs,
        maxOutputBytes: this.#maxOutputBytes,
        signal: request.signal,
      });
    } catch (error) {
      mask.wipe();
      this.#pool.release(lease.container, false); // in an unknown state: it goes
      throw error;
    } finally {
      // The SPAWN frame has its copy; the decrypted values go.
      for (const file of secrets.files) file.data.fill(0);
    }
    const { invocation, released } = started;
    void invocation.done.then(() => this.#pool.finishing(lease.container));
    void released.then((reusable) => this.#pool.release(lease.container, reusable));
    return { invocation, lease };
  }
}
