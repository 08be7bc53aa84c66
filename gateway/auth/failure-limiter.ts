/**
 * @module
 * Failed token attempts, limited per client address: a token bucket per address (lru-cache bounds how
 * many addresses are remembered). Each address may fail `burst` times; one more try comes back every
 * `refillMs`. An address with no try left is refused, right token or not, until one comes back: a
 * guesser gets about ten guesses a minute instead of thousands a second.
 */
import { isIPv6 } from 'node:net';
import { LRUCache } from 'lru-cache';

/** Options of {@link FailureLimiter}. */
export interface FailureLimiterOptions {
  /** Failures an address may make at once. @default 10 */
  burst?: number;
  /** How long until an address may fail once more. @default 6000 (10 a minute) */
  refillMs?: number;
  /** Addresses remembered; the least recent are forgotten first. @default 10000 */
  maxClients?: number;
  /** The clock, in ms (tests pass a fake one). @default performance.now */
  now?: () => number;
}

/** Whether an address may try now. */
export type Verdict = { allowed: true } | { allowed: false; retryAfterSeconds: number };

interface Bucket {
  tries: number;
  at: number;
}

/** Counts failed attempts per client address. */
export class FailureLimiter {
  readonly #burst: number;
  readonly #refillMs: number;
  readonly #now: () => number;
  readonly #buckets: LRUCache<string, Bucket>;

  constructor(options: FailureLimiterOptions = {}) {
    this.#burst = options.burst ?? 10;
    this.#refillMs = options.refillMs ?? 6000;
    if (!Number.isInteger(this.#burst) || this.#burst < 1) throw new TypeError(`burst must be a positive integer, got ${this.#burst}`);
    if (!(this.#refillMs > 0)) throw new TypeError(`refillMs must be positive, got ${this.#refillMs}`);
    this.#now = options.now ?? (() => performance.now());
    // A bucket full again is the same as none: it may be forgotten then.
    this.#buckets = new LRUCache({ max: options.maxClients ?? 10_000, ttl: this.#burst * this.#refillMs, ttlAutopurge: false, perf: { now: this.#now } });
  }

  /** Whether `address` may try now, and if not, in how many seconds it may. */
  check(address: string): Verdict {
    const tries = this.#tries(clientKey(address));
    if (tries >= 1) return { allowed: true };
    return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(((1 - tries) * this.#refillMs) / 1000)) };
  }

  /** Records a failed attempt of `address`. */
  fail(address: string): void {
    const key = clientKey(address);
    this.#buckets.set(key, { tries: Math.max(0, this.#tries(key) - 1), at: this.#now() });
  }

  /** The tries `key` has now, refilled since it last failed. */
  #tries(key: string): number {
    const bucket = this.#buckets.get(key);
    if (!bucket) return this.#burst;
    return Math.min(this.#burst, bucket.tries + (this.#now() - bucket.at) / this.#refillMs);
  }
}

/**
 * What a client is counted by: its IPv4 address (IPv4-mapped IPv6 included), or the /64 network of its
 * IPv6 address, since one IPv6 host can take any address of its /64.
 */
export function clientKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!isIPv6(address)) return address;
  return `${expandIPv6(address).slice(0, 4).join(':')}::/64`;
}

/** The eight groups of an IPv6 address, without `::`. */
function expandIPv6(address: string): string[] {
  const [head = '', tail] = address.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const missing = tail === undefined ? 0 : 8 - left.length - right.length;
  return [...left, ...Array<string>(missing).fill('0'), ...right].map((group) => group.toLowerCase().replace(/^0+(?=.)/, ''));
}
