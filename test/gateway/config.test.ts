/**
 * @module
 * loadConfig (gateway/config.ts): every default, overrides, size suffixes, integer and size bounds,
 * the FNIX_MAX_CONTAINERS/FNIX_POOL_SIZE rule, paths resolved against cwd, and ConfigErrors that name
 * the variable and the value.
 */
import path from 'node:path';
import { MAX_STATE_DIR_BYTES } from '../../runtime/container/launcher.ts';
import { describe, expect, it } from 'vitest';
import { type Config, ConfigError, loadConfig } from '../../gateway/config.ts';
import { thrownBy } from '../helpers/errors.ts';

const CWD = '/srv/fnix';
const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** The ConfigError loadConfig throws for `env`. */
function configErrorOf(env: Record<string, string>): ConfigError {
  return thrownBy(() => loadConfig(env, CWD), ConfigError);
}

describe('loadConfig: defaults', () => {
  it('gives every default for an empty environment', () => {
    expect(loadConfig({}, CWD)).toEqual({
      port: 8080,
      host: '127.0.0.1',
      allowedHosts: [],
      stateDir: '/srv/fnix/.fnix',
      functionsDir: '/srv/fnix/functions',
      packages: undefined,
      poolSize: 4,
      maxSessions: 32,
      maxContainers: 48,
      maxBody: 6 * MiB,
      maxOutput: 100 * MiB,
      idleTtlMs: 300_000,
      queueTimeoutMs: 10_000,
      limits: { memoryMb: 256, pidsLimit: 256, nofile: 1024, tmpMb: 64, shmMb: 16, cpus: 1 },
      shutdownGraceMs: 10_000,
      token: undefined,
      maxPushBytes: 100 * MiB,
      maxConnections: undefined,
      records: { maxLogBytes: 16 * MiB, maxAgeMs: 7 * 86_400_000, maxRecords: 10_000, ratePerSecond: MiB },
    });
  });

  it('treats empty values as unset', () => {
    const env = Object.fromEntries(
      [
        'FNIX_PORT',
        'FNIX_HOST',
        'FNIX_STATE_DIR',
        'FNIX_FUNCTIONS_DIR',
        'FNIX_PACKAGES',
        'FNIX_POOL_SIZE',
        'FNIX_MAX_SESSIONS',
        'FNIX_MAX_CONTAINERS',
        'FNIX_MAX_BODY',
        'FNIX_MAX_OUTPUT',
        'FNIX_IDLE_TTL_MS',
        'FNIX_QUEUE_TIMEOUT_MS',
        'FNIX_PIDS_LIMIT',
        'FNIX_NOFILE',
        'FNIX_TMP_SIZE',
        'FNIX_SHUTDOWN_GRACE_MS',
        'FNIX_CPUS',
        'FNIX_TOKEN',
        'FNIX_MAX_PUSH',
        'FNIX_ALLOWED_HOSTS',
        'FNIX_QUEUE_TIMEOUT',
        'FNIX_MAX_CONNECTIONS',
      ].map((name) => [name, '']),
    );
    expect(loadConfig(env, CWD)).toEqual(loadConfig({}, CWD));
  });

  it('ignores variables it does not know', () => {
    expect(loadConfig({ PORT: '1', FNIX_PORTS: '2', fnix_port: '3' }, CWD).port).toBe(8080);
  });

  it('resolves the default paths against process.cwd() when no cwd is given', () => {
    const config = loadConfig({});
    expect(config.stateDir).toBe(path.resolve(process.cwd(), '.fnix'));
    expect(config.functionsDir).toBe(path.resolve(process.cwd(), 'functions'));
  });

  it('derives the default FNIX_MAX_CONTAINERS as max(16, FNIX_POOL_SIZE + 4) + FNIX_MAX_SESSIONS', () => {
    const none = { FNIX_MAX_SESSIONS: '0' };
    expect(loadConfig({ ...none, FNIX_POOL_SIZE: '0' }, CWD).maxContainers).toBe(16);
    expect(loadConfig({ ...none, FNIX_POOL_SIZE: '12' }, CWD).maxContainers).toBe(16);
    expect(loadConfig({ ...none, FNIX_POOL_SIZE: '13' }, CWD).maxContainers).toBe(17);
    expect(loadConfig({ ...none, FNIX_POOL_SIZE: '256' }, CWD).maxContainers).toBe(260);
    expect(loadConfig({ FNIX_POOL_SIZE: '13', FNIX_MAX_SESSIONS: '10' }, CWD).maxContainers).toBe(27);
  });
});

describe('loadConfig: FNIX_TOKEN', () => {
  it('refuses a token shorter than 16 characters, naming the variable', () => {
    expect(() => loadConfig({ FNIX_TOKEN: 'short' }, CWD)).toThrow(/FNIX_TOKEN is 5 characters: use at least 16/);
  });
});

describe('loadConfig: FNIX_LOG_*', () => {
  it('takes an age in s, m, h or d', () => {
    expect(loadConfig({ FNIX_LOG_MAX_AGE: '30m' }, CWD).records.maxAgeMs).toBe(30 * 60_000);
    expect(loadConfig({ FNIX_LOG_MAX_AGE: '2d' }, CWD).records.maxAgeMs).toBe(2 * 86_400_000);
  });

  it('refuses a bad age, a bound below one line, and a rate below 1 KiB, naming the variable', () => {
    expect(() => loadConfig({ FNIX_LOG_MAX_AGE: 'forever' }, CWD)).toThrow(/FNIX_LOG_MAX_AGE="forever": expected an age/);
    expect(() => loadConfig({ FNIX_LOG_MAX_AGE: '10s' }, CWD)).toThrow(/from 1m to 3650d/);
    expect(() => loadConfig({ FNIX_LOG_MAX_BYTES: '1000' }, CWD)).toThrow(/FNIX_LOG_MAX_BYTES="1000": expected a size from 65536/);
    expect(() => loadConfig({ FNIX_LOG_RATE: '10' }, CWD)).toThrow(/FNIX_LOG_RATE="10"/);
    expect(() => loadConfig({ FNIX_LOG_MAX_RECORDS: '0' }, CWD)).toThrow(/FNIX_LOG_MAX_RECORDS="0"/);
  });
});

describe('loadConfig: FNIX_QUEUE_TIMEOUT', () => {
  it('takes a duration, or milliseconds', () => {
    expect(loadConfig({ FNIX_QUEUE_TIMEOUT: '2s' }, CWD).queueTimeoutMs).toBe(2000);
    expect(loadConfig({ FNIX_QUEUE_TIMEOUT: '1.5s' }, CWD).queueTimeoutMs).toBe(1500);
    expect(loadConfig({ FNIX_QUEUE_TIMEOUT: '250ms' }, CWD).queueTimeoutMs).toBe(250);
    expect(loadConfig({ FNIX_QUEUE_TIMEOUT: '1m' }, CWD).queueTimeoutMs).toBe(60_000);
    expect(loadConfig({ FNIX_QUEUE_TIMEOUT: '700' }, CWD).queueTimeoutMs).toBe(700);
    expect(loadConfig({ FNIX_QUEUE_TIMEOUT_MS: '700' }, CWD).queueTimeoutMs).toBe(700);
  });

  it('refuses a bad duration, one over 10 minutes, or both variables at once', () => {
    expect(() => loadConfig({ FNIX_QUEUE_TIMEOUT: 'soon' }, CWD)).toThrow(/FNIX_QUEUE_TIMEOUT="soon": expected a duration/);
    expect(() => loadConfig({ FNIX_QUEUE_TIMEOUT: '11m' }, CWD)).toThrow(/expected a duration from 0 to 10m/);
    expect(() => loadConfig({ FNIX_QUEUE_TIMEOUT: '1s', FNIX_QUEUE_TIMEOUT_MS: '1000' }, CWD)).toThrow(/both set/);
  });
});

describe('loadConfig: FNIX_STATE_DIR', () => {
  it("refuses a path too long for the agents' unix sockets, naming the limit", () => {
    const longest = `/${'s'.repeat(MAX_STATE_DIR_BYTES - 1)}`;
    expect(loadConfig({ FNIX_STATE_DIR: longest }, CWD).stateDir).toBe(longest);
    expect(() => loadConfig({ FNIX_STATE_DIR: `${longest}x` }, CWD)).toThrow(/FNIX_STATE_DIR is .* \(64 bytes\): .*at most 63 bytes/);
  });

  it('refuses a path with a colon, which no Podman volume can name', () => {
    expect(() => loadConfig({ FNIX_STATE_DIR: '/var/lib/fnix:1' }, CWD)).toThrow(
      /FNIX_STATE_DIR is \/var\/lib\/fnix:1, which holds a ':'.*use a path without one/,
    );
  });
});

describe('loadConfig: FNIX_MAX_CONNECTIONS', () => {
  it.each(['0', '-1', 'many', '1.5'])('refuses %j, naming the variable', (value) => {
    expect(() => loadConfig({ FNIX_MAX_CONNECTIONS: value }, CWD)).toThrow(/FNIX_MAX_CONNECTIONS=.*expected an integer from 1/);
  });
});

describe('loadConfig: FNIX_ALLOWED_HOSTS', () => {
  it('takes names, .domains and *, separated by commas', () => {
    expect(loadConfig({ FNIX_ALLOWED_HOSTS: '*' }, CWD).allowedHosts).toEqual(['*']);
    expect(loadConfig({ FNIX_ALLOWED_HOSTS: 'a.example,,b-1.example ,fnix_gateway' }, CWD).allowedHosts).toEqual(['a.example', 'b-1.example', 'fnix_gateway']);
  });

  it.each(['http://a.example', 'a.example:8080', '*.example', 'a..example', '-a.example', 'a example'])('refuses %j, naming the variable', (entry) => {
    expect(() => loadConfig({ FNIX_ALLOWED_HOSTS: entry }, CWD)).toThrow(/FNIX_ALLOWED_HOSTS has ".*": expected host names/);
  });
});

describe('loadConfig: overrides', () => {
  it('takes every variable', () => {
    const config = loadConfig(
      {
        FNIX_PORT: '9000',
        FNIX_HOST: '0.0.0.0',
        FNIX_STATE_DIR: '/var/lib/fnix',
        FNIX_FUNCTIONS_DIR: '/opt/functions',
        FNIX_PACKAGES: '<nixpkgs>',
        FNIX_POOL_SIZE: '2',
        FNIX_MAX_SESSIONS: '5',
        FNIX_MAX_CONTAINERS: '3',
        FNIX_MAX_BODY: '1024',
        FNIX_MAX_OUTPUT: '2MiB',
        FNIX_IDLE_TTL_MS: '1000',
        FNIX_QUEUE_TIMEOUT_MS: '0',
        FNIX_PIDS_LIMIT: '8',
        FNIX_NOFILE: '64',
        FNIX_TMP_SIZE: '1m',
        FNIX_SHUTDOWN_GRACE_MS: '600000',
        FNIX_CPUS: '1.5',
        FNIX_TOKEN: 'a-token-of-some-length',
        FNIX_MAX_PUSH: '8MiB',
        FNIX_ALLOWED_HOSTS: 'fnix.example.com, .Apps.Example',
        FNIX_MAX_CONNECTIONS: '500',
        FNIX_LOG_MAX_BYTES: '1MiB',
        FNIX_LOG_MAX_AGE: '12h',
        FNIX_LOG_MAX_RECORDS: '50',
        FNIX_LOG_RATE: '64KiB',
      },
      CWD,
    );
    expect(config).toEqual({
      port: 9000,
      host: '0.0.0.0',
      allowedHosts: ['fnix.example.com', '.apps.example'],
      stateDir: '/var/lib/fnix',
      functionsDir: '/opt/functions',
      packages: '<nixpkgs>',
      poolSize: 2,
      maxSessions: 5,
      maxContainers: 3,
      maxBody: 1024,
      maxOutput: 2 * MiB,
      idleTtlMs: 1000,
      queueTimeoutMs: 0,
      limits: { memoryMb: 256, pidsLimit: 8, nofile: 64, tmpMb: 1, shmMb: 16, cpus: 1.5 },
      shutdownGraceMs: 600_000,
      token: 'a-token-of-some-length',
      maxPushBytes: 8 * MiB,
      maxConnections: 500,
      records: { maxLogBytes: MiB, maxAgeMs: 12 * 3_600_000, maxRecords: 50, ratePerSecond: 64 * 1024 },
    });
  });

  it('resolves relative paths against cwd', () => {
    const config = loadConfig({ FNIX_STATE_DIR: 'state', FNIX_FUNCTIONS_DIR: '../shared/fns' }, CWD);
    expect(config.stateDir).toBe('/srv/fnix/state');
    expect(config.functionsDir).toBe('/srv/shared/fns');
  });

  it('normalises absolute paths', () => {
    expect(loadConfig({ FNIX_STATE_DIR: '/a/b/../c/' }, CWD).stateDir).toBe('/a/c');
  });

  it('passes FNIX_PACKAGES through unchanged (a Nix expression, not a path)', () => {
    expect(loadConfig({ FNIX_PACKAGES: './my-set' }, CWD).packages).toBe('./my-set');
  });

  it('accepts integers with surrounding whitespace', () => {
    expect(loadConfig({ FNIX_PORT: ' 8081 ' }, CWD).port).toBe(8081);
  });

  it.each([
    ['FNIX_PORT', 'port', '0', 0],
    ['FNIX_PORT', 'port', '65535', 65_535],
    ['FNIX_POOL_SIZE', 'poolSize', '0', 0],
    ['FNIX_MAX_CONTAINERS', 'maxContainers', '4096', 4096],
    ['FNIX_IDLE_TTL_MS', 'idleTtlMs', '86400000', 86_400_000],
    ['FNIX_PIDS_LIMIT', 'limits.pidsLimit', '65536', 65_536],
    ['FNIX_NOFILE', 'limits.nofile', '65536', 65_536],
    ['FNIX_QUEUE_TIMEOUT_MS', 'queueTimeoutMs', '600000', 600_000],
    ['FNIX_SHUTDOWN_GRACE_MS', 'shutdownGraceMs', '0', 0],
    ['FNIX_CPUS', 'limits.cpus', '0.5', 0.5],
    ['FNIX_CPUS', 'limits.cpus', '2', 2],
  ] as const)('accepts %s=%s at its bound', (name, key, raw, value) => {
    const config = loadConfig({ [name]: raw }, CWD);
    const read = key.startsWith('limits.') ? config.limits[key.slice('limits.'.length) as keyof Config['limits']] : config[key as keyof Config];
    expect(read).toBe(value);
  });
});

describe('loadConfig: sizes', () => {
  it.each([
    ['6291456', 6 * MiB],
    ['6MiB', 6 * MiB],
    ['6mib', 6 * MiB],
    ['6MB', 6 * MiB],
    ['6m', 6 * MiB],
    ['6M', 6 * MiB],
    ['6 MiB', 6 * MiB],
    [' 6MiB ', 6 * MiB],
    ['512k', 512 * KiB],
    ['512K', 512 * KiB],
    ['512kb', 512 * KiB],
    ['512KiB', 512 * KiB],
    ['1g', GiB],
    ['1GiB', GiB],
    ['1gb', GiB],
    ['0', 0],
    ['0k', 0],
  ])('reads FNIX_MAX_BODY=%j as %d bytes (powers of 1024)', (raw, bytes) => {
    expect(loadConfig({ FNIX_MAX_BODY: raw }, CWD).maxBody).toBe(bytes);
  });

  it.each(['6xb', '6.5m', '1.5', '-1', 'm', 'MiB', '0x10', '6 M iB', '6MiBs', '6t', '1e6', 'abc', '6,000'])(
    'refuses FNIX_MAX_BODY=%j, naming the variable and the value',
    (raw) => {
      const error = configErrorOf({ FNIX_MAX_BODY: raw });
      expect(error.message).toContain('FNIX_MAX_BODY');
      expect(error.message).toContain(JSON.stringify(raw));
    },
  );

  it('bounds FNIX_MAX_BODY at 1 GiB', () => {
    expect(loadConfig({ FNIX_MAX_BODY: `${GiB}` }, CWD).maxBody).toBe(GiB);
    expect(configErrorOf({ FNIX_MAX_BODY: `${GiB + 1}` }).message).toContain('FNIX_MAX_BODY');
    expect(configErrorOf({ FNIX_MAX_BODY: '2g' }).message).toContain('"2g"');
  });

  it('bounds FNIX_MAX_OUTPUT from 1 byte to 64 GiB', () => {
    expect(loadConfig({ FNIX_MAX_OUTPUT: '1' }, CWD).maxOutput).toBe(1);
    expect(loadConfig({ FNIX_MAX_OUTPUT: '64g' }, CWD).maxOutput).toBe(64 * GiB);
    expect(configErrorOf({ FNIX_MAX_OUTPUT: '0' }).message).toContain('FNIX_MAX_OUTPUT');
    expect(configErrorOf({ FNIX_MAX_OUTPUT: '65g' }).message).toContain('"65g"');
  });

  it('bounds FNIX_TMP_SIZE from 1 MiB, rounding up to whole MiB', () => {
    expect(loadConfig({ FNIX_TMP_SIZE: '1024k' }, CWD).limits.tmpMb).toBe(1);
    expect(loadConfig({ FNIX_TMP_SIZE: '1025k' }, CWD).limits.tmpMb).toBe(2);
    const error = configErrorOf({ FNIX_TMP_SIZE: '1023k' });
    expect(error.message).toContain('FNIX_TMP_SIZE');
    expect(error.message).toContain('"1023k"');
  });

  it('refuses a size too large to be a safe integer', () => {
    expect(configErrorOf({ FNIX_MAX_OUTPUT: '99999999999999999999' }).message).toContain('FNIX_MAX_OUTPUT');
    expect(configErrorOf({ FNIX_MAX_OUTPUT: '9999999999999g' }).message).toContain('FNIX_MAX_OUTPUT');
  });
});

describe('loadConfig: invalid integers', () => {
  it.each([
    ['FNIX_POOL_SIZE', 'abc'],
    ['FNIX_POOL_SIZE', '-1'],
    ['FNIX_POOL_SIZE', '1.5'],
    ['FNIX_POOL_SIZE', '257'],
    ['FNIX_POOL_SIZE', '4k'],
    ['FNIX_POOL_SIZE', '0x4'],
    ['FNIX_POOL_SIZE', '1e2'],
    ['FNIX_POOL_SIZE', '+4'],
    ['FNIX_POOL_SIZE', ' '],
    ['FNIX_PORT', '65536'],
    ['FNIX_PORT', 'http'],
    ['FNIX_MAX_CONTAINERS', '0'],
    ['FNIX_MAX_CONTAINERS', '4097'],
    ['FNIX_IDLE_TTL_MS', '999'],
    ['FNIX_IDLE_TTL_MS', '86400001'],
    ['FNIX_QUEUE_TIMEOUT_MS', '600001'],
    ['FNIX_PIDS_LIMIT', '7'],
    ['FNIX_NOFILE', '63'],
    ['FNIX_SHUTDOWN_GRACE_MS', '99999999999999999999'],
    ['FNIX_CPUS', '0'],
    ['FNIX_CPUS', 'all'],
    ['FNIX_CPUS', '-1'],
  ])('refuses %s=%j, naming the variable and the value', (name, raw) => {
    const error = configErrorOf({ [name]: raw });
    expect(error.name).toBe('ConfigError');
    expect(error.message).toContain(name);
    expect(error.message).toContain(JSON.stringify(raw));
  });

  it('states the accepted range', () => {
    const message = configErrorOf({ FNIX_PORT: '70000' }).message;
    expect(message).toContain('0');
    expect(message).toContain('65535');
  });
});

describe('loadConfig: FNIX_MAX_CONTAINERS and FNIX_POOL_SIZE', () => {
  it('refuses FNIX_MAX_CONTAINERS below FNIX_POOL_SIZE, naming both and their values', () => {
    const error = configErrorOf({ FNIX_POOL_SIZE: '10', FNIX_MAX_CONTAINERS: '9' });
    expect(error.message).toContain('FNIX_MAX_CONTAINERS');
    expect(error.message).toContain('FNIX_POOL_SIZE');
    expect(error.message).toContain('9');
    expect(error.message).toContain('10');
  });

  it('compares against the default pool size when only FNIX_MAX_CONTAINERS is set', () => {
    expect(configErrorOf({ FNIX_MAX_CONTAINERS: '3' }).message).toContain('FNIX_POOL_SIZE');
    expect(loadConfig({ FNIX_MAX_CONTAINERS: '4' }, CWD).maxContainers).toBe(4);
  });

  it('accepts FNIX_MAX_CONTAINERS equal to FNIX_POOL_SIZE', () => {
    const config = loadConfig({ FNIX_POOL_SIZE: '10', FNIX_MAX_CONTAINERS: '10' }, CWD);
    expect([config.poolSize, config.maxContainers]).toEqual([10, 10]);
  });

  it('accepts a pool of 0 with a single container', () => {
    const config = loadConfig({ FNIX_POOL_SIZE: '0', FNIX_MAX_CONTAINERS: '1' }, CWD);
    expect([config.poolSize, config.maxContainers]).toEqual([0, 1]);
  });
});

describe('loadConfig: binary caches', () => {
  const KEY = 'cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=';
  const OTHER_KEY = 'other-1:CNHJZBh9K4tP3EKF6FkkgeVYsS3ohTl+oS0Qa8bezVs=';

  it("leaves nix.conf's caches alone when no variable is set, or all are empty", () => {
    expect(loadConfig({}, CWD).binaryCaches).toBeUndefined();
    expect(loadConfig({ FNIX_SUBSTITUTERS: '', FNIX_TRUSTED_PUBLIC_KEYS: ' , ', FNIX_REQUIRE_SIGS: '' }, CWD).binaryCaches).toBeUndefined();
  });

  it('takes caches and keys separated by spaces or commas, and FNIX_REQUIRE_SIGS', () => {
    const config = loadConfig(
      {
        FNIX_SUBSTITUTERS: 'file:///srv/nix-cache, http://cache.lan:8080  https://cache.example.org/',
        FNIX_TRUSTED_PUBLIC_KEYS: `${KEY},${OTHER_KEY}`,
        FNIX_REQUIRE_SIGS: 'false',
      },
      CWD,
    );
    expect(config.binaryCaches).toEqual({
      substituters: ['file:///srv/nix-cache', 'http://cache.lan:8080', 'https://cache.example.org/'],
      trustedPublicKeys: [KEY, OTHER_KEY],
      requireSigs: false,
    });
  });

  it('keeps only the variables that are set, so that the defaults stay in runtime/nix/substituters.ts', () => {
    expect(loadConfig({ FNIX_SUBSTITUTERS: 'file:///srv/nix-cache' }, CWD).binaryCaches).toEqual({ substituters: ['file:///srv/nix-cache'] });
    expect(loadConfig({ FNIX_REQUIRE_SIGS: 'TRUE' }, CWD).binaryCaches).toEqual({ requireSigs: true });
    expect(loadConfig({ FNIX_REQUIRE_SIGS: '0' }, CWD).binaryCaches).toEqual({ requireSigs: false });
  });

  it.each([
    [
      's3://bucket',
      /FNIX_SUBSTITUTERS has "s3:\/\/bucket", which is not a binary cache URL: s3:\/\/ caches are not supported; use file:\/\/, http:\/\/ or https:\/\//,
    ],
    ['/srv/nix-cache', /FNIX_SUBSTITUTERS has "\/srv\/nix-cache", which is not a binary cache URL: it is not a URL/],
    ['file:///srv/nix-cache?trusted=1', /FNIX_SUBSTITUTERS has .*: store parameters .* set FNIX_REQUIRE_SIGS=false/],
    ['https://user:pw@cache.example.org', /FNIX_SUBSTITUTERS has .*: it holds credentials/],
  ])('refuses the cache %j, naming the variable and the value', (value, message) => {
    expect(configErrorOf({ FNIX_SUBSTITUTERS: `file:///ok ${value}` }).message).toMatch(message);
  });

  it('refuses a malformed key, and a secret key, naming the variable and the value', () => {
    expect(configErrorOf({ FNIX_TRUSTED_PUBLIC_KEYS: 'cache.example.org-1' }).message).toMatch(
      /^FNIX_TRUSTED_PUBLIC_KEYS has "cache.example.org-1", which is not a Nix public key: expected name:base64/,
    );
    const secret = `fnix-1:${Buffer.alloc(64, 1).toString('base64')}`;
    const message = configErrorOf({ FNIX_TRUSTED_PUBLIC_KEYS: `${KEY} ${secret}` }).message;
    expect(message).toBe(
      'FNIX_TRUSTED_PUBLIC_KEYS has "fnix-1:…", which is not a Nix public key: this is a secret key (64 bytes); use the public key file of the pair',
    );
  });

  it.each(['no', 'off', 'maybe'])('refuses FNIX_REQUIRE_SIGS=%j', (value) => {
    expect(configErrorOf({ FNIX_REQUIRE_SIGS: value }).message).toBe(`FNIX_REQUIRE_SIGS=${JSON.stringify(value)}: expected true or false`);
  });
});

describe('loadConfig: FNIX_ALLOWED_URIS', () => {
  it('allows no URL when it is unset or empty', () => {
    expect(loadConfig({}, CWD).allowedUris).toBeUndefined();
    expect(loadConfig({ FNIX_ALLOWED_URIS: ' , ' }, CWD).allowedUris).toBeUndefined();
  });

  it('takes http:// and https:// prefixes separated by spaces or commas', () => {
    const env = { FNIX_ALLOWED_URIS: 'https://github.com/NixOS/nixpkgs/archive/, http://mirror.lan:8080/sets  https://example.org' };
    expect(loadConfig(env, CWD).allowedUris).toEqual(['https://github.com/NixOS/nixpkgs/archive/', 'http://mirror.lan:8080/sets', 'https://example.org']);
  });

  it.each([
    ['file:///etc/', /only http:\/\/ and https:\/\/ URLs may be allowed \(file: would expose the host\)/],
    ['/srv/sets', /it is not a URL/],
    ['https://user:pw@example.org/', /it holds credentials/],
  ])('refuses %j, naming the variable and the value', (value, message) => {
    const error = configErrorOf({ FNIX_ALLOWED_URIS: `https://ok.example/ ${value}` });
    expect(error.message).toMatch(/^FNIX_ALLOWED_URIS has "[^"]+", which pushed Nix code may not be allowed to fetch: /);
    expect(error.message).toMatch(message);
  });
});
