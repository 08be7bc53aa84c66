/**
 * @module
 * Which binary caches (Nix's "substituters") a nix-build may fetch from, and the `--option` arguments that say
 * so. The offline set uses none. Every other set uses nix.conf's substituters (read with
 * `nix show-config`) plus the operator's (FNIX_SUBSTITUTERS), trusting nix.conf's keys plus FNIX_TRUSTED_PUBLIC_KEYS,
 * and refusing unsigned paths unless FNIX_REQUIRE_SIGS=false.
 *
 * Nix retries an unreachable cache for seconds (a failed DNS lookup: 5 attempts, about 4 s) to minutes (a server
 * that accepts and never answers: 300 s per attempt) on every build. So each cache's `<url>/nix-cache-info` is
 * probed first (a file's existence, or a GET with a 3 s limit), the answer is kept for a minute, an unreachable
 * cache is named in one log line when it goes away (and another when it comes back), and only the reachable
 * ones are passed to Nix.
 */
import { stat } from 'node:fs/promises';
import { execa } from 'execa';
import { FnixError } from '../errors.ts';
import { type Logger, silentLogger } from '../log.ts';
import type { PackageSet } from './package-set.ts';
import { parseListedUrl } from './url-list.ts';

/** The operator's binary cache settings (gateway/config.ts reads them from the environment). */
export interface BinaryCacheSettings {
  /** FNIX_SUBSTITUTERS: cache URLs (`file:///dir`, `http://…`, `https://…`) used after nix.conf's. @default [] */
  substituters?: readonly string[];
  /** FNIX_TRUSTED_PUBLIC_KEYS: `name:base64` public keys trusted besides nix.conf's. @default [] */
  trustedPublicKeys?: readonly string[];
  /** FNIX_REQUIRE_SIGS: refuse paths that no trusted key signed (Nix's require-sigs). @default true */
  requireSigs?: boolean;
}

/** The part of Nix's own configuration (nix.conf) that concerns substitution. */
export interface NixSubstitutionConfig {
  substituters: string[];
  trustedPublicKeys: string[];
}

/** Options of {@link Substituters}. */
export interface SubstitutersOptions extends BinaryCacheSettings {
  /** Where an unreachable cache is reported. @default silentLogger */
  log?: Logger;
  /** How long a probe of an http(s) cache may take before the cache counts as unreachable. @default 3000 */
  probeTimeoutMs?: number;
  /** How long a probe's answer is kept. @default 60_000 */
  probeTtlMs?: number;
  /** Nix's own substituters and keys. @default read once from `nix show-config` */
  nixConfig?: NixSubstitutionConfig;
}

/** The URL schemes fnix probes and accepts in FNIX_SUBSTITUTERS. */
const PROBED_SCHEMES = ['file:', 'http:', 'https:'];

/** Nix's connect-timeout, in seconds, for a cache that answered its probe but stops answering during a build. */
const CONNECT_TIMEOUT_S = 5;

/** An ed25519 public key is 32 bytes. */
const PUBLIC_KEY_BYTES = 32;

/** What Nix 2.8 prints (PathSubstitutionGoal::tryNext) when a cache's copy is unsigned or signed by an untrusted key. */
const REFUSED_SUBSTITUTE = /^warning: the substitute for '([^']+)' from '([^']+)' is not signed by any of the keys in 'trusted-public-keys'$/gm;

/** One probe's answer. */
type Probe = { reachable: true } | { reachable: false; reason: string };

/** The offline set never fetches; every other set may. The one place that decides by `kind`. */
export function isOfflinePackageSet(packageSet: PackageSet): boolean {
  return packageSet.kind === 'offline';
}

/**
 * Why `url` is not a binary cache URL fnix accepts, or undefined when it is: `file:///absolute/dir`, or
 * `http(s)://host[:port][/path]`, without credentials (Nix reads them from its netrc-file), query or fragment
 * (a `?trusted=1` would switch signature checks off behind FNIX_REQUIRE_SIGS's back), spaces or commas.
 */
export function invalidSubstituterReason(url: string): string | undefined {
  const parsed = parseListedUrl(url);
  if (typeof parsed === 'string') return parsed;
  if (!PROBED_SCHEMES.includes(parsed.protocol)) return `${parsed.protocol.slice(0, -1)}:// caches are not supported; use file://, http:// or https://`;
  if (parsed.search !== '' || parsed.hash !== '' || url.includes('?') || url.includes('#')) {
    return 'store parameters (?…) and fragments are not accepted; to accept unsigned paths, set FNIX_REQUIRE_SIGS=false';
  }
  if (parsed.username !== '' || parsed.password !== '') return "it holds credentials; put them in Nix's netrc-file instead";
  if (parsed.protocol === 'file:' && !url.startsWith('file:///')) return 'a file:// cache is a local directory: file:///absolute/path';
  return undefined;
}

/**
 * Why `key` is not a Nix public key, or undefined when it is: `name:base64` of 32 bytes, as
 * `nix-store --generate-binary-cache-key` writes it to its public-key file.
 */
export function invalidTrustedKeyReason(key: string): string | undefined {
  const match = /^([^\s:,]+):([A-Za-z0-9+/]+={0,2})$/.exec(key);
  if (!match) return 'expected name:base64, such as cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=';
  const bytes = Buffer.from(match[2]!, 'base64').length;
  if (bytes === 2 * PUBLIC_KEY_BYTES) return 'this is a secret key (64 bytes); use the public key file of the pair';
  if (bytes !== PUBLIC_KEY_BYTES) return `its key is ${bytes} bytes, not the ${PUBLIC_KEY_BYTES} of an ed25519 public key`;
  return undefined;
}

/**
 * A key as error messages show it: its name, never its key material (someone may paste a secret key where
 * a public key belongs), e.g. `cache.example.org-1:…`.
 */
export function redactKey(key: string): string {
  const colon = key.indexOf(':');
  if (colon !== -1) return `${key.slice(0, colon)}:…`;
  return key.length <= 32 ? key : `${key.slice(0, 8)}…`;
}

/**
 * Chooses the substituters of each nix-build: none for the offline set, else the reachable ones.
 * @example
 * const substituters = new Substituters({ substituters: ['file:///srv/cache'], trustedPublicKeys: [key], log });
 * const args = await substituters.nixBuildOptions(packageSet, true); // ['--option', 'substituters', 'file:///srv/cache', …]
 */
export class Substituters {
  readonly #extraSubstituters: readonly string[];
  readonly #extraTrustedPublicKeys: readonly string[];
  readonly #requireSigs: boolean;
  readonly #log: Logger;
  readonly #probeTimeoutMs: number;
  readonly #probeTtlMs: number;
  #nixConfig: Promise<NixSubstitutionConfig> | undefined;
  readonly #probes = new Map<string, { answer: Promise<Probe>; expiresAt: number }>();
  /** Each cache's last known state, so that a change is logged once. */
  readonly #reachable = new Map<string, boolean>();

  /** @throws TypeError naming the option and the value when a URL, a key or a limit is invalid. */
  constructor(options: SubstitutersOptions = {}) {
    this.#extraSubstituters = [...(options.substituters ?? [])];
    this.#extraTrustedPublicKeys = [...(options.trustedPublicKeys ?? [])];
    for (const url of this.#extraSubstituters) {
      const why = invalidSubstituterReason(url);
      if (why) throw new TypeError(`substituters: ${JSON.stringify(url)} is not a binary cache URL: ${why}`);
    }
    for (const key of this.#extraTrustedPublicKeys) {
      const why = invalidTrustedKeyReason(key);
      if (why) throw new TypeError(`trustedPublicKeys: ${JSON.stringify(redactKey(key))} is not a Nix public key: ${why}`);
    }
    this.#requireSigs = options.requireSigs ?? true;
    this.#log = options.log ?? silentLogger;
    this.#probeTimeoutMs = positive('probeTimeoutMs', options.probeTimeoutMs ?? 3000);
    this.#probeTtlMs = positive('probeTtlMs', options.probeTtlMs ?? 60_000);
    this.#nixConfig = options.nixConfig && Promise.resolve(options.nixConfig);
  }

  /**
   * The `--option` arguments for a nix-build in `packageSet`: `substituters ''` for the offline set or when
   * nothing is to be fetched (`needsFetch` false: every output is already in the store), else the reachable
   * caches, every trusted key, require-sigs and a connect-timeout. Takes up to the probe timeout when a
   * cache's last probe is older than the probe TTL, nothing otherwise.
   */
  async nixBuildOptions(packageSet: PackageSet, needsFetch: boolean): Promise<string[]> {
    if (isOfflinePackageSet(packageSet) || !needsFetch) return ['--option', 'substituters', ''];
    const nix = await this.#readNixConfig();
    const urls = [...new Set([...nix.substituters, ...this.#extraSubstituters])];
    const answers = await Promise.all(urls.map((url) => this.#probe(url)));
    const reachable = urls.filter((_url, i) => answers[i]!.reachable);
    const keys = [...new Set([...nix.trustedPublicKeys, ...this.#extraTrustedPublicKeys])];
    return [
      ...['--option', 'substituters', reachable.join(' ')],
      ...['--option', 'trusted-public-keys', keys.join(' ')],
      ...['--option', 'require-sigs', String(this.#requireSigs)],
      ...['--option', 'connect-timeout', String(CONNECT_TIMEOUT_S)],
    ];
  }

  /** Nix's own substituters and keys, read once (none, with a warning, when `nix show-config` fails). */
  #readNixConfig(): Promise<NixSubstitutionConfig> {
    this.#nixConfig ??= readNixSubstitutionConfig().catch((error: unknown) => {
      this.#log.warn("reading Nix's substituters failed; using only FNIX_SUBSTITUTERS", { error: String(error) });
      return { substituters: [], trustedPublicKeys: [] };
    });
    return this.#nixConfig;
  }

  /** The cached answer for `url`, probing it again once it is older than the TTL; concurrent builds share a probe. */
  #probe(url: string): Promise<Probe> {
    const cached = this.#probes.get(url);
    if (cached && Date.now() < cached.expiresAt) return cached.answer;
    const entry = { answer: probeCache(url, this.#probeTimeoutMs), expiresAt: Number.POSITIVE_INFINITY };
    this.#probes.set(url, entry);
    entry.answer = entry.answer.then((answer) => {
      entry.expiresAt = Date.now() + this.#probeTtlMs;
      this.#report(url, answer);
      return answer;
    });
    return entry.answer;
  }

  /** Logs a cache going away (once, until it is back) and coming back. */
  #report(url: string, answer: Probe): void {
    const before = this.#reachable.get(url);
    this.#reachable.set(url, answer.reachable);
    if (!answer.reachable && before !== false) {
      this.#log.warn('binary cache unreachable; builds skip it', { substituter: url, reason: answer.reason, retryAfterMs: this.#probeTtlMs });
    } else if (answer.reachable && before === false) {
      this.#log.info('binary cache reachable again', { substituter: url });
    }
  }
}

/**
 * `error` (a failed build's PACKAGE_BUILD_FAILED) restated when Nix's output shows that it refused a cache's
 * copy for want of a trusted signature and built the path itself instead; `error` itself otherwise.
 * The refused copies are in `details.refusedSubstitutes`.
 */
export function explainRefusedSubstitutes(error: FnixError, nixOutput: string): FnixError {
  const refused = [...nixOutput.matchAll(REFUSED_SUBSTITUTE)].map((m) => ({ path: m[1]!, substituter: m[2]! }));
  if (refused.length === 0) return error;
  const shown = refused
    .slice(0, 3)
    .map((r) => `${r.path} from ${r.substituter}`)
    .join(', ');
  const more = refused.length > 3 ? ` and ${refused.length - 3} more` : '';
  return new FnixError(
    'PACKAGE_BUILD_FAILED',
    `the binary cache's copy of ${shown}${more} was not signed by a trusted key, so Nix refused it and built it instead, ` +
      "which failed; add the cache's public key to FNIX_TRUSTED_PUBLIC_KEYS (or, for an unsigned cache you trust, set " +
      `FNIX_REQUIRE_SIGS=false). ${error.message}`,
    { details: { ...error.details, refusedSubstitutes: refused }, cause: error },
  );
}

/** Reads `substituters` and `trusted-public-keys` from `nix show-config --json` (nix.conf, NIX_CONFIG, defaults). */
export async function readNixSubstitutionConfig(): Promise<NixSubstitutionConfig> {
  const { stdout } = await execa('nix', ['--extra-experimental-features', 'nix-command', 'show-config', '--json'], { timeout: 30_000, stdin: 'ignore' });
  const config = JSON.parse(stdout) as Record<string, { value?: unknown } | undefined>;
  const list = (name: string) => {
    const value = config[name]?.value;
    return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string' && v !== '') : [];
  };
  return { substituters: list('substituters'), trustedPublicKeys: list('trusted-public-keys') };
}

/**
 * Whether the cache at `url` answers: for file://, its nix-cache-info exists (Nix would otherwise create an
 * empty cache there); for http(s)://, a GET of it answers 200 within `timeoutMs`. Other kinds of store
 * (ssh://, s3://… from nix.conf) are passed to Nix unprobed.
 */
async function probeCache(url: string, timeoutMs: number): Promise<Probe> {
  const base = url.split('?')[0]!.replace(/\/+$/, '');
  const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(base)?.[0].toLowerCase();
  if (scheme === 'file:') {
    const file = `${base.slice('file://'.length)}/nix-cache-info`;
    try {
      await stat(file);
      return { reachable: true };
    } catch (error) {
      return { reachable: false, reason: `${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}` };
    }
  }
  if (scheme !== 'http:' && scheme !== 'https:') return { reachable: true };
  try {
    const response = await fetch(`${base}/nix-cache-info`, { signal: AbortSignal.timeout(timeoutMs) });
    await response.body?.cancel();
    return response.status === 200 ? { reachable: true } : { reachable: false, reason: `nix-cache-info answered HTTP ${response.status}` };
  } catch (error) {
    return { reachable: false, reason: describeFetchError(error, timeoutMs) };
  }
}

/** `ENOTFOUND`, `ECONNREFUSED`, `no answer within 3000 ms`… */
function describeFetchError(error: unknown, timeoutMs: number): string {
  if (error instanceof DOMException && (error.name === 'TimeoutError' || error.name === 'AbortError')) return `no answer within ${timeoutMs} ms`;
  const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (typeof cause?.code === 'string') return cause.code;
  if (typeof cause?.message === 'string') return cause.message;
  return error instanceof Error ? error.message : String(error);
}

/** Checks a duration option. */
function positive(name: string, value: number): number {
  if (!(Number.isFinite(value) && value > 0)) throw new TypeError(`${name} must be a positive number of milliseconds, not ${value}`);
  return value;
}
