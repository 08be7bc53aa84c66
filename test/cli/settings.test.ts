/**
 * @module
 * Where the CLI talks to, with what token (cli/settings.ts): --url, FNIX_URL, FNIX_TOKEN and the
 * credentials file, its place, its mode, and which wins.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CliError } from '../../cli/errors.ts';
import { credentialsPath, DEFAULT_URL, loadSettings, normalizeUrl, saveToken } from '../../cli/settings.ts';

let home: string;
beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'fnix-cli-settings-'));
});
afterEach(async () => {
  await rm(home, { recursive: true, force: true });
});

describe('credentialsPath', () => {
  it('is under XDG_CONFIG_HOME, else ~/.config', () => {
    expect(credentialsPath({ XDG_CONFIG_HOME: '/c', HOME: '/h' })).toBe('/c/fnix/credentials.json');
    expect(credentialsPath({ HOME: '/h' })).toBe('/h/.config/fnix/credentials.json');
    expect(credentialsPath({ XDG_CONFIG_HOME: '', HOME: '/h' })).toBe('/h/.config/fnix/credentials.json');
  });
});

describe('normalizeUrl', () => {
  it('keeps the origin and path, without a trailing slash', () => {
    expect(normalizeUrl('http://127.0.0.1:8080/')).toBe('http://127.0.0.1:8080');
    expect(normalizeUrl('https://fnix.example/base/')).toBe('https://fnix.example/base');
  });

  it.each(['127.0.0.1:8080', 'ftp://x', 'http://fnix:token@host', 'nonsense'])('refuses %j as a usage error', (url) => {
    expect(() => normalizeUrl(url)).toThrow(CliError);
  });
});

describe('loadSettings', () => {
  const env = (extra: Record<string, string> = {}) => ({ HOME: home, ...extra });

  it('defaults to http://127.0.0.1:8080 with no token', async () => {
    expect(await loadSettings({}, env())).toMatchObject({ url: DEFAULT_URL, token: undefined, tokenSource: undefined });
  });

  it('takes the token that fnix login saved for the URL, and the URL of the last login', async () => {
    const path = credentialsPath(env());
    await saveToken(path, 'http://a:1', 'token-a');
    await saveToken(path, 'http://b:2', 'token-b');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(home, '.config/fnix'))).mode & 0o777).toBe(0o700);
    expect(await loadSettings({}, env())).toMatchObject({ url: 'http://b:2', token: 'token-b', tokenSource: 'credentials' });
    expect(await loadSettings({}, env({ FNIX_URL: 'http://a:1/' }))).toMatchObject({ url: 'http://a:1', token: 'token-a' });
    expect(await loadSettings({ url: 'http://a:1' }, env({ FNIX_URL: 'http://b:2' }))).toMatchObject({ url: 'http://a:1', token: 'token-a' });
    // A gateway it has no token for gets none, not another gateway's.
    expect(await loadSettings({}, env({ FNIX_URL: 'http://c:3' }))).toMatchObject({ url: 'http://c:3', token: undefined });
    // FNIX_TOKEN wins.
    expect(await loadSettings({}, env({ FNIX_TOKEN: 'from-env' }))).toMatchObject({ token: 'from-env', tokenSource: 'FNIX_TOKEN' });
    const saved = JSON.parse(await readFile(path, 'utf8'));
    expect(Object.keys(saved.gateways)).toEqual(['http://a:1', 'http://b:2']);
  });

  it('narrows an existing file to mode 0600 when it saves', async () => {
    const path = credentialsPath(env());
    await saveToken(path, 'http://a:1', 'one');
    await writeFile(path, await readFile(path), { mode: 0o644 });
    await saveToken(path, 'http://a:1', 'two');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
  });

  it('says which file is broken, and how to fix it', async () => {
    const path = credentialsPath(env());
    await saveToken(path, 'http://a:1', 'one');
    await writeFile(path, '{not json');
    await expect(loadSettings({}, env())).rejects.toMatchObject({ code: 'CREDENTIALS_UNREADABLE', hint: 'remove it and run fnix login again' });
  });

  it('reads FNIX_KEY', async () => {
    expect((await loadSettings({}, env({ FNIX_KEY: 'k' }))).key).toBe('k');
  });
});
