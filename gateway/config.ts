/**
 * @module
 * fnix's configuration, read once from the environment at start (of-watchdog's config.New(env) is the
 * model): every variable, its default, and an error that names the variable and the value.
 */
import { resolve } from 'node:path';
import { MAX_STATE_DIR_BYTES } from '../runtime/container/launcher.ts';
import { invalidAllowedUriReason } from '../runtime/nix/repository-set.ts';
import { type BinaryCacheSettings, invalidSubstituterReason, invalidTrustedKeyReason, redactKey } from '../runtime/nix/substituters.ts';
import { splitList } from '../runtime/nix/url-list.ts';
import { decodeSecretsKey } from '../runtime/secrets/key.ts';
import type { ContainerLimits } from '../runtime/podman/run.ts';
import { DEFAULT_RECORD_BOUNDS, type RecordBounds } from '../runtime/records/bounds.ts';
import { type ClusterSettings, ClusterSettingsError, readClusterSettings } from '../cluster/settings.ts';
import { ALLOWED_HOST_PATTERN } from './host-check.ts';

/** The gateway's and the runtime's settings. */
export interface Config {
  /** FNIX_PORT. @default 8080 */
  port: number;
  /** FNIX_HOST. @default '127.0.0.1' */
  host: string;
  /** FNIX_ALLOWED_HOSTS: names (besides IP addresses and localhost) that requests may carry in Host. @default [] */
  allowedHosts: string[];
  /** FNIX_STATE_DIR, made absolute. @default './.fnix' */
  stateDir: string;
  /** FNIX_FUNCTIONS_DIR, made absolute. @default './functions' */
  functionsDir: string;
  /** FNIX_PACKAGES: a Nix expression for the package set. @default `<nixpkgs>` if found, else the starter set */
  packages: string | undefined;
  /**
   * Binary caches for every package set but the offline set, added to nix.conf's: FNIX_SUBSTITUTERS
   * (file://, http:// or https:// URLs, separated by spaces or commas), FNIX_TRUSTED_PUBLIC_KEYS (`name:base64`
   * keys, likewise) and FNIX_REQUIRE_SIGS (`false` accepts unsigned paths). Only the variables that are set appear.
   * @default undefined: nix.conf's caches and keys only, signatures required (runtime/nix/substituters.ts)
   */
  binaryCaches: BinaryCacheSettings | undefined;
  /**
   * FNIX_ALLOWED_URIS: URL prefixes (http:// or https://, separated by spaces or commas) that a pushed repository's
   * packages.nix may fetch from at evaluation, such as a pinned nixpkgs tarball. @default undefined: none
   */
  allowedUris: string[] | undefined;
  /** FNIX_POOL_SIZE: generic containers kept warm. @default 4 */
  poolSize: number;
  /** FNIX_MAX_SESSIONS: WebSocket sessions open at once (each holds a container). @default 32 */
  maxSessions: number;
  /** FNIX_MAX_CONTAINERS: containers of every kind. @default max(16, poolSize + 4) + maxSessions */
  maxContainers: number;
  /** FNIX_MAX_BODY: request body bytes. @default 6 MiB */
  maxBody: number;
  /** FNIX_MAX_OUTPUT: stdout plus stderr bytes per invocation. @default 100 MiB */
  maxOutput: number;
  /** FNIX_IDLE_TTL_MS: how long a specialised container may stay idle. @default 300000 */
  idleTtlMs: number;
  /** FNIX_QUEUE_TIMEOUT (`10s`, `500ms`) or FNIX_QUEUE_TIMEOUT_MS: how long a request waits for a container. @default 10000 */
  queueTimeoutMs: number;
  /**
   * What every container starts with: FNIX_PIDS_LIMIT (processes, @default 256), FNIX_NOFILE (open
   * files per process, @default 1024), FNIX_TMP_SIZE (its /tmp, @default 64 MiB), FNIX_CPUS (@default 1),
   * and, not settable, a memory limit of 256 MiB until the function's own is set, and a 16 MiB /dev/shm.
   */
  limits: ContainerLimits;
  /** FNIX_SHUTDOWN_GRACE_MS: how long shutdown waits for running invocations. @default 10000 */
  shutdownGraceMs: number;
  /** FNIX_TOKEN: the deploy token; unset, one is made at first start and kept in the state folder. */
  token: string | undefined;
  /** FNIX_METRICS_TOKEN: when set, GET /metrics needs `Authorization: Bearer <it>`. @default undefined: /metrics is open */
  metricsToken: string | undefined;
  /** FNIX_MAX_PUSH: the largest pack a git push may send. @default 100 MiB */
  maxPushBytes: number;
  /**
   * FNIX_SECRETS_KEY: the key secrets are encrypted with, 32 bytes in base64 (docs/secrets.md).
   * @default undefined: the key in `<stateDir>/secrets.key`, made at first start
   */
  secretsKey: Buffer | undefined;
  /**
   * FNIX_HISTORY: the deployments kept (the newest, besides the active one and the one it replaced), with
   * their builds and GC roots. @default undefined, which deployments/deployments.ts takes as 50
   */
  historyLimit: number | undefined;
  /**
   * FNIX_MAX_CONNECTIONS: client connections served at once; more are closed as they arrive.
   * @default the open-files limit less what fnix keeps for its own work (gateway/connection-limit.ts)
   */
  maxConnections: number | undefined;
  /**
   * The invocation records' and log lines' bounds, per function (docs/logs.md): FNIX_LOG_MAX_BYTES (log
   * bytes, @default 16 MiB), FNIX_LOG_MAX_AGE (lines and records, `7d`, `12h`, `30m`, @default 7d),
   * FNIX_LOG_MAX_RECORDS (@default 10000) and FNIX_LOG_RATE (log bytes per second, @default 1 MiB).
   */
  records: RecordBounds;
  /**
   * A cluster node's settings (docs/cluster.md): FNIX_CLUSTER_ETCD turns cluster mode on, and then
   * FNIX_TOKEN and FNIX_SECRETS_KEY must be set, the same on every node. @default undefined: one host
   */
  cluster: ClusterSettings | undefined;
}

const MIB = 1024 * 1024;
/** A container's memory limit, in MiB, until it is specialised for a function and gets that function's `memoryMb`. */
const START_MEMORY_MB = 256;
/** Each container's /dev/shm, in MiB. */
const SHM_MB = 16;
/** The most deployments FNIX_HISTORY may keep (every prune reads every record). */
const MAX_HISTORY = 10_000;

type Env = Readonly<Record<string, string | undefined>>;

/** A configuration variable with a bad value. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * Reads the configuration from `env`. Relative paths resolve against `cwd`.
 * @example
 * const config = loadConfig(process.env);
 */
export function loadConfig(env: Env, cwd = process.cwd()): Config {
  const poolSize = readInteger(env, 'FNIX_POOL_SIZE', 4, 0, 256);
  const maxSessions = readInteger(env, 'FNIX_MAX_SESSIONS', 32, 0, 4096);
  // A session holds its container for as long as it is open: by default the sessions get room of
  // their own, so that open sessions never starve HTTP invocations of containers.
  const maxContainers = readInteger(env, 'FNIX_MAX_CONTAINERS', Math.max(16, poolSize + 4) + maxSessions, 1, 4096);
  if (maxContainers < poolSize) {
    throw new ConfigError(`FNIX_MAX_CONTAINERS (${maxContainers}) must be at least FNIX_POOL_SIZE (${poolSize})`);
  }
  const stateDir = resolve(cwd, env['FNIX_STATE_DIR'] || '.fnix');
  // Podman's --volume takes `source:target:options`: a colon in a source path cannot be said.
  if (stateDir.includes(':')) {
    throw new ConfigError(
      `FNIX_STATE_DIR is ${stateDir}, which holds a ':': Podman could not mount the folders under it into containers; use a path without one`,
    );
  }
  if (Buffer.byteLength(stateDir) > MAX_STATE_DIR_BYTES) {
    throw new ConfigError(
      `FNIX_STATE_DIR is ${stateDir} (${Buffer.byteLength(stateDir)} bytes): the agents' sockets under it would pass the 107-byte limit of a unix socket's path; use a folder whose path is at most ${MAX_STATE_DIR_BYTES} bytes`,
    );
  }
  const host = env['FNIX_HOST'] || '127.0.0.1';
  const token = env['FNIX_TOKEN'] || undefined;
  if (token !== undefined && token.length < 16) {
    throw new ConfigError(`FNIX_TOKEN is ${token.length} characters: use at least 16 (or unset it, and fnix makes one)`);
  }
  const metricsToken = env['FNIX_METRICS_TOKEN'] || undefined;
  if (metricsToken !== undefined && (metricsToken.length < 16 || /\s/.test(metricsToken))) {
    throw new ConfigError(
      `FNIX_METRICS_TOKEN must be at least 16 characters with no spaces (it has ${metricsToken.length}); or unset it, and /metrics is open`,
    );
  }
  return {
    port: readInteger(env, 'FNIX_PORT', 8080, 0, 65_535),
    host,
    allowedHosts: readAllowedHosts(env),
    stateDir,
    functionsDir: resolve(cwd, env['FNIX_FUNCTIONS_DIR'] || 'functions'),
    packages: env['FNIX_PACKAGES'] || undefined,
    binaryCaches: readBinaryCaches(env),
    allowedUris: readAllowedUris(env),
    poolSize,
    maxSessions,
    maxContainers,
    maxBody: readBytes(env, 'FNIX_MAX_BODY', 6 * MIB, 0, 1024 * MIB),
    maxOutput: readBytes(env, 'FNIX_MAX_OUTPUT', 100 * MIB, 1, 64 * 1024 * MIB),
    idleTtlMs: readInteger(env, 'FNIX_IDLE_TTL_MS', 300_000, 1000, 86_400_000),
    queueTimeoutMs: readQueueTimeout(env),
    limits: {
      memoryMb: START_MEMORY_MB,
      pidsLimit: readInteger(env, 'FNIX_PIDS_LIMIT', 256, 8, 65_536),
      nofile: readInteger(env, 'FNIX_NOFILE', 1024, 64, 65_536),
      tmpMb: Math.ceil(readBytes(env, 'FNIX_TMP_SIZE', 64 * MIB, MIB, 64 * 1024 * MIB) / MIB),
      shmMb: SHM_MB,
      cpus: readDecimal(env, 'FNIX_CPUS', 1, 0.01, 1024),
    },
    shutdownGraceMs: readInteger(env, 'FNIX_SHUTDOWN_GRACE_MS', 10_000, 0, 600_000),
    token,
    metricsToken,
    maxPushBytes: readBytes(env, 'FNIX_MAX_PUSH', 100 * MIB, MIB, 64 * 1024 * MIB),
    secretsKey: readSecretsKey(env),
    historyLimit: env['FNIX_HISTORY'] ? readInteger(env, 'FNIX_HISTORY', 0, 1, MAX_HISTORY) : undefined,
    maxConnections: env['FNIX_MAX_CONNECTIONS'] ? readInteger(env, 'FNIX_MAX_CONNECTIONS', 0, 1, 1_048_576) : undefined,
    records: readRecordBounds(env),
    cluster: readCluster(env, token),
  };
}

/** The cluster settings (cluster/settings.ts), with what a cluster needs of the rest: one token and one secrets key for all. */
function readCluster(env: Env, token: string | undefined): ClusterSettings | undefined {
  let settings: ClusterSettings | undefined;
  try {
    settings = readClusterSettings(env);
  } catch (error) {
    if (error instanceof ClusterSettingsError) throw new ConfigError(error.message);
    throw error;
  }
  if (!settings) return undefined;
  if (!token) throw new ConfigError('FNIX_TOKEN is unset: in a cluster every node needs the same deploy token (the nodes fetch from each other with it)');
  if (!env['FNIX_SECRETS_KEY'])
    throw new ConfigError('FNIX_SECRETS_KEY is unset: in a cluster every node needs the same secrets key (the secrets are kept in etcd, encrypted with it)');
  return settings;
}

/** FNIX_LOG_MAX_BYTES, FNIX_LOG_MAX_AGE, FNIX_LOG_MAX_RECORDS and FNIX_LOG_RATE (runtime/records/bounds.ts has the defaults). */
function readRecordBounds(env: Env): RecordBounds {
  const defaults = DEFAULT_RECORD_BOUNDS;
  return {
    maxLogBytes: readBytes(env, 'FNIX_LOG_MAX_BYTES', defaults.maxLogBytes, 64 * 1024, 64 * 1024 * MIB),
    maxAgeMs: readAge(env, 'FNIX_LOG_MAX_AGE', defaults.maxAgeMs),
    maxRecords: readInteger(env, 'FNIX_LOG_MAX_RECORDS', defaults.maxRecords, 1, 10_000_000),
    ratePerSecond: readBytes(env, 'FNIX_LOG_RATE', defaults.ratePerSecond, 1024, 1024 * MIB),
  };
}

/** An age: a number with s, m, h or d (`7d`, `12h`), from a minute to ten years. */
function readAge(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const match = /^(\d+)\s*([smhd])$/i.exec(raw.trim());
  const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(match?.[2] ?? 's').toLowerCase() as 's' | 'm' | 'h' | 'd'];
  const value = match ? Number(match[1]) * unit : Number.NaN;
  if (!(value >= 60_000 && value <= 3650 * 86_400_000)) {
    throw new ConfigError(`${name}=${JSON.stringify(raw)}: expected an age from 1m to 3650d, such as 7d, 12h or 30m`);
  }
  return value;
}

/** FNIX_QUEUE_TIMEOUT, a duration (`10s`, `500ms`, `1m`, or milliseconds), or FNIX_QUEUE_TIMEOUT_MS; not both. */
function readQueueTimeout(env: Env): number {
  const raw = env['FNIX_QUEUE_TIMEOUT'];
  if (raw === undefined || raw === '') return readInteger(env, 'FNIX_QUEUE_TIMEOUT_MS', 10_000, 0, 600_000);
  if (env['FNIX_QUEUE_TIMEOUT_MS']) throw new ConfigError('FNIX_QUEUE_TIMEOUT and FNIX_QUEUE_TIMEOUT_MS are both set: set one of them');
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/i.exec(raw.trim());
  const unit = { ms: 1, s: 1000, m: 60_000 }[(match?.[2] ?? 'ms').toLowerCase() as 'ms' | 's' | 'm'];
  const value = match ? Math.round(Number(match[1]) * unit) : Number.NaN;
  if (!(value >= 0 && value <= 600_000)) {
    throw new ConfigError(`FNIX_QUEUE_TIMEOUT=${JSON.stringify(raw)}: expected a duration from 0 to 10m, such as 10s, 500ms or 10000 (milliseconds)`);
  }
  return value;
}

/** FNIX_SUBSTITUTERS, FNIX_TRUSTED_PUBLIC_KEYS and FNIX_REQUIRE_SIGS, checked; undefined when none is set. */
function readBinaryCaches(env: Env): BinaryCacheSettings | undefined {
  const settings: BinaryCacheSettings = {};
  const urls = splitList(env['FNIX_SUBSTITUTERS'] ?? '');
  for (const url of urls) {
    const why = invalidSubstituterReason(url);
    if (why) throw new ConfigError(`FNIX_SUBSTITUTERS has ${JSON.stringify(url)}, which is not a binary cache URL: ${why}`);
  }
  if (urls.length > 0) settings.substituters = urls;
  const keys = splitList(env['FNIX_TRUSTED_PUBLIC_KEYS'] ?? '');
  for (const key of keys) {
    const why = invalidTrustedKeyReason(key);
    if (why) throw new ConfigError(`FNIX_TRUSTED_PUBLIC_KEYS has ${JSON.stringify(redactKey(key))}, which is not a Nix public key: ${why}`);
  }
  if (keys.length > 0) settings.trustedPublicKeys = keys;
  const requireSigs = env['FNIX_REQUIRE_SIGS']?.trim().toLowerCase();
  if (requireSigs) {
    if (!['true', 'false', '1', '0'].includes(requireSigs)) {
      throw new ConfigError(`FNIX_REQUIRE_SIGS=${JSON.stringify(env['FNIX_REQUIRE_SIGS'])}: expected true or false`);
    }
    settings.requireSigs = requireSigs === 'true' || requireSigs === '1';
  }
  return Object.keys(settings).length > 0 ? settings : undefined;
}

/** FNIX_ALLOWED_URIS, checked; undefined when it is unset or empty. */
function readAllowedUris(env: Env): string[] | undefined {
  const uris = splitList(env['FNIX_ALLOWED_URIS'] ?? '');
  for (const uri of uris) {
    const why = invalidAllowedUriReason(uri);
    if (why) throw new ConfigError(`FNIX_ALLOWED_URIS has ${JSON.stringify(uri)}, which pushed Nix code may not be allowed to fetch: ${why}`);
  }
  return uris.length > 0 ? uris : undefined;
}

/** FNIX_SECRETS_KEY, decoded; undefined when unset. The message never quotes the value. */
function readSecretsKey(env: Env): Buffer | undefined {
  const raw = env['FNIX_SECRETS_KEY'];
  if (raw === undefined || raw === '') return undefined;
  const key = decodeSecretsKey(raw);
  if (!key) {
    throw new ConfigError(
      `FNIX_SECRETS_KEY is not a secrets key: expected 32 bytes in base64 (44 characters), such as the output of \`openssl rand -base64 32\`, or unset it to use the key file in the state folder`,
    );
  }
  return key;
}

/** FNIX_ALLOWED_HOSTS: comma-separated names, `.domain` entries, or `*`. */
function readAllowedHosts(env: Env): string[] {
  const entries = (env['FNIX_ALLOWED_HOSTS'] ?? '')
    .split(',')
    .map((entry) => entry.trim().toLowerCase())
    .filter(Boolean);
  for (const entry of entries) {
    if (!ALLOWED_HOST_PATTERN.test(entry)) {
      throw new ConfigError(
        `FNIX_ALLOWED_HOSTS has ${JSON.stringify(entry)}: expected host names (fnix.example.com), domains (.example.com) or *, separated by commas`,
      );
    }
  }
  return entries;
}

function readInteger(env: Env, name: string, fallback: number, min: number, max: number): number {
  return readNumber(env, name, fallback, min, max, true);
}

function readDecimal(env: Env, name: string, fallback: number, min: number, max: number): number {
  return readNumber(env, name, fallback, min, max, false);
}

/** Reads a plain decimal number (digits, and a fraction unless `integer`) within [min, max]. */
function readNumber(env: Env, name: string, fallback: number, min: number, max: number, integer: boolean): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const pattern = integer ? /^\d+$/ : /^\d+(\.\d+)?$/;
  const value = pattern.test(raw.trim()) ? Number(raw.trim()) : Number.NaN;
  if (!(value >= min && value <= max) || (integer && !Number.isSafeInteger(value))) {
    throw new ConfigError(`${name}=${JSON.stringify(raw)}: expected ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`);
  }
  return value;
}

const UNITS: Record<string, number> = { '': 1, k: 1024, kb: 1024, kib: 1024, m: MIB, mb: MIB, mib: MIB, g: 1024 * MIB, gb: 1024 * MIB, gib: 1024 * MIB };

/** Reads a size: bytes, or a number with k/KiB, m/MiB or g/GiB (all powers of 1024). */
function readBytes(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const match = /^(\d+)\s*([a-z]*)$/i.exec(raw.trim());
  const unit = match ? UNITS[match[2]!.toLowerCase()] : undefined;
  const value = match && unit ? Number(match[1]) * unit : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name}=${JSON.stringify(raw)}: expected a size from ${min} to ${max} bytes, such as 6291456 or 6MiB`);
  }
  return value;
}
