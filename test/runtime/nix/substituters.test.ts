/**
 * @module
 * Binary caches (runtime/nix/substituters.ts), for real: a package built once, copied to a signed file://
 * cache and deleted from the store comes back by substitution (its builder fails if it ever runs); a copy
 * signed by another key, or unsigned, is refused with a clear error unless FNIX_REQUIRE_SIGS says otherwise;
 * an unreachable cache costs one probe and one log line. Also the URL and key checks, and the probe's TTL.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { FnixError } from '../../../runtime/errors.ts';
import { createLogger, type Logger } from '../../../runtime/log.ts';
import { nixPathExpression, type PackageSet, offlinePackageSet } from '../../../runtime/nix/package-set.ts';
import { PackageResolver } from '../../../runtime/nix/resolve.ts';
import { invalidSubstituterReason, invalidTrustedKeyReason, isOfflinePackageSet, Substituters } from '../../../runtime/nix/substituters.ts';
import { splitList } from '../../../runtime/nix/url-list.ts';
import { rejectionOf, thrownBy } from '../../helpers/errors.ts';

const CANARIES_NIX = fileURLToPath(new URL('../../fixtures/substituters/canaries.nix', import.meta.url));
const NIX_COMMAND = ['--extra-experimental-features', 'nix-command'];
const NO_NIX_CONFIG = { substituters: [], trustedPublicKeys: [] };
const KEY = 'cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=';

/** A logger whose lines (as fnix writes them) land in `lines`. */
function recordingLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const log = createLogger({ stream: { write: (text: string) => lines.push(...text.split('\n').filter(Boolean)) } });
  return { log, lines };
}

/** Lets the logger write what it has pending (it writes once per turn of the event loop). */
function flushLogs(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

describe('binary cache settings', () => {
  it('accepts file://, http:// and https:// caches', () => {
    for (const url of ['file:///srv/nix-cache', 'http://cache.lan:8080', 'https://cache.example.org/nix/', 'https://[::1]:5000']) {
      expect(invalidSubstituterReason(url), url).toBeUndefined();
    }
  });

  it.each([
    ['s3://bucket', /s3:\/\/ caches are not supported/],
    ['ssh://builder', /not supported/],
    ['daemon', /not a URL/],
    ['/srv/cache', /not a URL/],
    ['file://host/srv/cache', /file:\/\/\/absolute\/path/],
    ['file:///srv/cache?trusted=1', /FNIX_REQUIRE_SIGS=false/],
    ['https://cache.example.org/?priority=10', /store parameters/],
    ['https://user:secret@cache.example.org', /netrc-file/],
  ])('refuses %j', (url, why) => {
    expect(invalidSubstituterReason(url)).toMatch(why);
  });

  it('accepts public keys and refuses anything else, recognising a secret key', () => {
    expect(invalidTrustedKeyReason(KEY)).toBeUndefined();
    expect(invalidTrustedKeyReason('no-colon')).toMatch(/expected name:base64/);
    expect(invalidTrustedKeyReason('name:not base64!')).toMatch(/expected name:base64/);
    expect(invalidTrustedKeyReason(`k:${Buffer.alloc(16).toString('base64')}`)).toMatch(/16 bytes, not the 32/);
    expect(invalidTrustedKeyReason(`k:${Buffer.alloc(64).toString('base64')}`)).toMatch(/secret key/);
  });

  it('splits lists on spaces and commas, dropping empty entries and repeats', () => {
    expect(splitList(' file:///a, http://b  file:///a,,\nhttps://c ')).toEqual(['file:///a', 'http://b', 'https://c']);
    expect(splitList('')).toEqual([]);
  });

  it('refuses bad options at construction, naming the option and the value', () => {
    expect(thrownBy(() => new Substituters({ substituters: ['ftp://x'] }), TypeError).message).toMatch(/^substituters: "ftp:\/\/x"/);
    expect(thrownBy(() => new Substituters({ trustedPublicKeys: ['k'] }), TypeError).message).toMatch(/^trustedPublicKeys: "k"/);
    expect(thrownBy(() => new Substituters({ probeTtlMs: 0 }), TypeError).message).toMatch(/probeTtlMs/);
  });
});

describe('Substituters.nixBuildOptions', () => {
  let tmp: string;
  const configured: PackageSet = { kind: 'configured', expression: '/srv/pkgs', description: '/srv/pkgs' };

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'fnix-substituters-unit-'));
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('keeps the offline set offline, and every set when nothing is to be fetched', async () => {
    expect(isOfflinePackageSet(offlinePackageSet())).toBe(true);
    expect(isOfflinePackageSet(configured)).toBe(false);
    const substituters = new Substituters({ substituters: ['file:///nonexistent'], nixConfig: NO_NIX_CONFIG });
    expect(await substituters.nixBuildOptions(offlinePackageSet(), true)).toEqual(['--option', 'substituters', '']);
    expect(await substituters.nixBuildOptions(configured, false)).toEqual(['--option', 'substituters', '']);
  });

  it("passes nix.conf's caches and keys, then the operator's, and require-sigs", async () => {
    const cache = path.join(tmp, 'reachable');
    await mkdir(cache);
    await writeFile(path.join(cache, 'nix-cache-info'), 'StoreDir: /nix/store\n');
    const substituters = new Substituters({
      substituters: [`file://${cache}`],
      trustedPublicKeys: [KEY],
      requireSigs: false,
      nixConfig: { substituters: ['ssh://builder'], trustedPublicKeys: ['nixos-1:abc='] },
    });
    expect(await substituters.nixBuildOptions(configured, true)).toEqual([
      ...['--option', 'substituters', `ssh://builder file://${cache}`],
      ...['--option', 'trusted-public-keys', `nixos-1:abc= ${KEY}`],
      ...['--option', 'require-sigs', 'false'],
      ...['--option', 'connect-timeout', '5'],
    ]);
  });

  it('keeps a probe for its TTL, logs a cache going away once and coming back once', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const cache = path.join(tmp, 'later');
    await mkdir(cache);
    const url = `file://${cache}`;
    const { log, lines } = recordingLogger();
    const substituters = new Substituters({ substituters: [url], nixConfig: NO_NIX_CONFIG, log, probeTtlMs: 60_000 });
    const listed = async () => (await substituters.nixBuildOptions(configured, true))[2];

    expect(await listed()).toBe('');
    await writeFile(path.join(cache, 'nix-cache-info'), 'StoreDir: /nix/store\n');
    vi.advanceTimersByTime(59_000);
    expect(await listed()).toBe(''); // the answer is still a minute old at most
    vi.advanceTimersByTime(30_000);
    await rm(path.join(cache, 'nix-cache-info'));
    expect(await listed()).toBe('');
    await flushLogs();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/ WARN binary cache unreachable; builds skip it substituter=file:\/\/\S+later reason=.*ENOENT/);

    await writeFile(path.join(cache, 'nix-cache-info'), 'StoreDir: /nix/store\n');
    vi.advanceTimersByTime(61_000);
    expect(await listed()).toBe(url);
    await flushLogs();
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/ INFO binary cache reachable again substituter=file:\/\/\S+later$/);
  });
});

describe('PackageResolver with binary caches (real Nix)', () => {
  let tmp: string;
  let packageSet: PackageSet;
  let setFile: string;
  let allowBuild: string;
  let publicKey: string;
  let otherKeyDir: string;
  let rootsCount = 0;

  const resolverWith = (substituters: Substituters) => {
    rootsCount += 1;
    return new PackageResolver({ packageSet, gcRootsDir: path.join(tmp, `roots-${rootsCount}`), substituters });
  };

  /** The output path of one of the set's attributes, without building it. */
  const outPathOf = async (attr: string) => {
    const { stdout } = await execa('nix-instantiate', ['--eval', '--json', setFile, '-A', `${attr}.outPath`]);
    return JSON.parse(stdout) as string;
  };

  /** Builds a canary the one way its builder allows, copies it to a cache at `dir` (signed with `secretKey`), and deletes it from the store. */
  const publish = async (attr: string, dir: string, secretKey?: string) => {
    const args = [
      '--no-out-link',
      '--option',
      'substituters',
      '',
      '--option',
      'sandbox',
      'true',
      '--option',
      'extra-sandbox-paths',
      `/allow-build=${allowBuild}`,
    ];
    const { stdout } = await execa('nix-build', [setFile, '-A', attr, ...args]);
    const out = stdout.trim();
    const store = secretKey ? `file://${dir}?secret-key=${secretKey}` : `file://${dir}`;
    await execa('nix', [...NIX_COMMAND, 'copy', '--to', store, out]);
    await execa('nix-store', ['--delete', out]);
    expect(existsSync(out)).toBe(false);
    return out;
  };

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'fnix-substituters-'));
    setFile = path.join(tmp, 'set.nix');
    await writeFile(setFile, `import ${nixPathExpression(CANARIES_NIX)} { nonce = "${randomBytes(8).toString('hex')}"; }\n`);
    packageSet = { kind: 'configured', expression: nixPathExpression(setFile), description: setFile };
    allowBuild = path.join(tmp, 'allow-build');
    await writeFile(allowBuild, '');
    await execa('nix-store', ['--generate-binary-cache-key', 'fnix-test-1', path.join(tmp, 'secret-key'), path.join(tmp, 'public-key')]);
    publicKey = (await readFile(path.join(tmp, 'public-key'), 'utf8')).trim();
    otherKeyDir = path.join(tmp, 'other-key');
    await mkdir(otherKeyDir);
    await execa('nix-store', ['--generate-binary-cache-key', 'fnix-test-other-1', path.join(otherKeyDir, 'secret-key'), path.join(otherKeyDir, 'public-key')]);
  });

  afterAll(async () => {
    // The roots first, then this suite's outputs, then its derivations (never a garbage collection: other tests
    // share the store). Each has the nonce in its hash, so nothing else can be using them.
    const { stdout: listed } = await execa('nix-instantiate', [setFile], { reject: false });
    const derivations = listed.split('\n').filter((p) => p.endsWith('.drv'));
    const { stdout: outputs } = await execa('nix-store', ['--query', '--outputs', ...derivations], { reject: false });
    await rm(tmp, { recursive: true, force: true });
    await execa('nix-store', ['--delete', ...outputs.split('\n').filter((p) => p !== '' && existsSync(p))], { reject: false });
    await execa('nix-store', ['--delete', ...derivations], { reject: false });
    // A failed build leaves its output's lock file behind.
    for (const out of outputs.split('\n').filter(Boolean)) await rm(`${out}.lock`, { force: true });
  });

  it('gets a package back from a signed file:// cache by substitution, not by building', async () => {
    const cache = path.join(tmp, 'cache-signed');
    const out = await publish('canary-signed', cache, path.join(tmp, 'secret-key'));
    const { log, lines } = recordingLogger();
    const resolver = resolverWith(new Substituters({ substituters: [`file://${cache}`], trustedPublicKeys: [publicKey], log }));

    const started = performance.now();
    const resolution = await resolver.resolve(['canary-signed']);
    const tookMs = performance.now() - started;

    expect(resolution.packages).toEqual([{ attr: 'canary-signed', storePath: out }]);
    expect(resolution.builtNewPaths).toBe(true);
    const { stdout } = await execa('fnix-canary-signed', { env: { PATH: resolution.binPath }, extendEnv: false });
    expect(stdout).toBe('fnix-canary-signed');
    expect(tookMs).toBeLessThan(10_000);
    await flushLogs();
    expect(lines.filter((line) => line.includes(cache))).toEqual([]);
  }, 60_000);

  it("refuses a cache's copy signed by another key, saying so and naming FNIX_TRUSTED_PUBLIC_KEYS", async () => {
    const cache = path.join(tmp, 'cache-other-key');
    const out = await publish('canary-other-key', cache, path.join(otherKeyDir, 'secret-key'));
    const resolver = resolverWith(new Substituters({ substituters: [`file://${cache}`], trustedPublicKeys: [publicKey] }));

    const error = await rejectionOf(resolver.resolve(['canary-other-key']), FnixError);

    expect(error.code).toBe('PACKAGE_BUILD_FAILED');
    expect(error.details).toMatchObject({ packages: ['canary-other-key'], refusedSubstitutes: [{ path: out, substituter: `file://${cache}` }] });
    expect(error.message).toContain(`the binary cache's copy of ${out} from file://${cache} was not signed by a trusted key`);
    expect(error.message).toContain('FNIX_TRUSTED_PUBLIC_KEYS');
    expect(error.details['log']).toContain('fnix canary: the builder of fnix-canary-other-key ran');
    expect(existsSync(out)).toBe(false);
  }, 60_000);

  it('refuses an unsigned cache by default, and takes from it with requireSigs false', async () => {
    const cache = path.join(tmp, 'cache-unsigned');
    const out = await publish('canary-unsigned', cache);
    const refusing = resolverWith(new Substituters({ substituters: [`file://${cache}`], trustedPublicKeys: [publicKey] }));
    const error = await rejectionOf(refusing.resolve(['canary-unsigned']), FnixError);
    expect(error.details).toMatchObject({ refusedSubstitutes: [{ path: out, substituter: `file://${cache}` }] });
    expect(existsSync(out)).toBe(false);

    const accepting = resolverWith(new Substituters({ substituters: [`file://${cache}`], requireSigs: false }));
    const resolution = await accepting.resolve(['canary-unsigned']);
    expect(resolution.packages).toEqual([{ attr: 'canary-unsigned', storePath: out }]);
  }, 60_000);

  it('skips an unreachable cache after one bounded probe, naming it in one log line', async () => {
    // A server that accepts connections and never answers, and a directory that does not exist.
    const sockets = new Set<net.Socket>();
    const server = net.createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const silent = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    const missing = path.join(tmp, 'no-such-cache');
    const { log, lines } = recordingLogger();
    const resolver = resolverWith(new Substituters({ substituters: [silent, `file://${missing}`], log, probeTimeoutMs: 3000 }));
    try {
      const started = performance.now();
      const first = await resolver.resolve(['plain-a']);
      const firstMs = performance.now() - started;
      const again = performance.now();
      const second = await resolver.resolve(['plain-b']);
      const secondMs = performance.now() - again;

      expect(first.packages[0]?.storePath).toBe(await outPathOf('plain-a'));
      expect(second.packages[0]?.storePath).toBe(await outPathOf('plain-b'));
      expect(firstMs).toBeLessThan(3000 + 3000); // the probe's limit, and the build
      expect(secondMs).toBeLessThan(2000); // the probe's answer is kept: no waiting at all
      expect(existsSync(missing)).toBe(false); // Nix, given it, would have made an empty cache there
      await flushLogs();
      const warnings = (url: string) => lines.filter((line) => line.includes(' WARN ') && line.includes(`substituter=${url} `));
      expect(warnings(silent)).toEqual([expect.stringMatching(/binary cache unreachable; builds skip it .*reason="no answer within 3000 ms"/)]);
      expect(warnings(`file://${missing}`)).toEqual([expect.stringMatching(/reason=.*ENOENT/)]);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 60_000);
});
