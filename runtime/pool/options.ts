/**
 * @module
 * The pool's options and their validation: a bad value throws a TypeError at construction that names
 * the option and the value.
 */
import type { Container } from '../container/container.ts';
import type { LaunchRequest } from '../container/launcher.ts';

/** What the pool needs from a launcher (runtime/container/launcher.ts). */
export interface ContainerSource {
  launch(request: LaunchRequest): Promise<Container>;
  remove(container: Container, reason: string): void;
  drain(): Promise<void>;
}

/**
 * Options for the Pool (runtime/pool/pool.ts). Every setting that the environment sets is required
 * here: gateway/config.ts is where their defaults live.
 */
export interface PoolOptions {
  source: ContainerSource;
  /** Generic containers kept warm (FNIX_POOL_SIZE). */
  size: number;
  /** Containers of every kind at most; requests queue beyond it (FNIX_MAX_CONTAINERS). The pool is always bounded. */
  maxContainers: number;
  /** How long a specialised container may stay idle before it is removed (FNIX_IDLE_TTL_MS). */
  idleTtlMs: number;
  /** How long a request may wait for capacity before NO_CAPACITY (FNIX_QUEUE_TIMEOUT). */
  queueTimeoutMs: number;
  /** Requests that may wait at once; more get NO_CAPACITY at once. @default 256 */
  maxQueue?: number;
  /** Reports background problems (a failed refill). */
  onError?: (error: unknown) => void;
}

/** {@link PoolOptions} with every default filled in. */
export type ResolvedPoolOptions = Required<PoolOptions>;

/** Requests that may wait for a container at once, by default. */
export const MAX_QUEUE = 256;

/**
 * Fills in the defaults and checks the bounds.
 * @throws TypeError when maxContainers is not a positive integer, or size is not from 0 to maxContainers.
 */
export function normalizePoolOptions(options: PoolOptions): ResolvedPoolOptions {
  if (!Number.isInteger(options.maxContainers) || options.maxContainers < 1) {
    throw new TypeError(`maxContainers must be a positive integer, got ${options.maxContainers}`);
  }
  const { size } = options;
  if (!Number.isInteger(size) || size < 0 || size > options.maxContainers) {
    throw new TypeError(`size must be an integer from 0 to maxContainers (${options.maxContainers}), got ${size}`);
  }
  return {
    source: options.source,
    size,
    maxContainers: options.maxContainers,
    idleTtlMs: options.idleTtlMs,
    queueTimeoutMs: options.queueTimeoutMs,
    maxQueue: options.maxQueue ?? MAX_QUEUE,
    onError: options.onError ?? (() => {}),
  };
}
