/**
 * @module
 * Where the CLI talks to and with what token: `--url`/FNIX_URL, FNIX_TOKEN, and the credentials file
 * that `fnix login` writes ($XDG_CONFIG_HOME/fnix/credentials.json, else ~/.config/fnix/credentials.json,
 * mode 0600), which keeps a token per gateway URL. Read once, from the environment passed in.
 */
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { CliError, usageError } from './errors.ts';

/** The gateway's address when nothing says otherwise. */
export const DEFAULT_URL = 'http://127.0.0.1:8080';

/** What the credentials file holds. */
export interface Credentials {
  /** The gateway the last `fnix login` was for: the URL when neither --url nor FNIX_URL is set. */
  current?: string | undefined;
  /** A token per gateway URL. */
  gateways: Record<string, { token: string; savedAt: string }>;
}

/** The settings a command runs with. */
export interface Settings {
  /** The gateway's base URL, without a trailing slash. */
  url: string;
  token: string | undefined;
  /** Where the token came from, for messages. */
  tokenSource: 'FNIX_TOKEN' | 'credentials' | undefined;
  /** An invoke key for private functions (FNIX_KEY). */
  key: string | undefined;
  credentialsPath: string;
}

/** The credentials file's path for `env`. */
export function credentialsPath(env: NodeJS.ProcessEnv): string {
  const config = env['XDG_CONFIG_HOME'] || join(env['HOME'] || homedir(), '.config');
  return join(config, 'fnix', 'credentials.json');
}

/** A gateway URL as the CLI keeps it: http(s), no trailing slash. Throws a usage error otherwise. */
export function normalizeUrl(raw: string, from = 'FNIX_URL'): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw usageError(`${from} is not a URL: ${JSON.stringify(raw)}`, "set it to the gateway's address, e.g. FNIX_URL=http://127.0.0.1:8080");
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw usageError(`${from} must be an http:// or https:// URL, not ${JSON.stringify(raw)}`);
  if (url.username || url.password) throw usageError(`${from} must not carry credentials; set FNIX_TOKEN or run fnix login instead`);
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/** Reads the credentials file; empty when there is none. */
export async function readCredentials(path: string): Promise<Credentials> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { gateways: {} };
    throw new CliError('CREDENTIALS_UNREADABLE', `cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  try {
    const parsed = JSON.parse(text) as Partial<Credentials>;
    return { current: parsed.current, gateways: parsed.gateways ?? {} };
  } catch (error) {
    throw new CliError('CREDENTIALS_UNREADABLE', `${path} is not valid JSON`, { hint: 'remove it and run fnix login again', cause: error });
  }
}

/** Saves `token` for `url` and makes it the current gateway; the file is written whole, mode 0600, in a 0700 folder. */
export async function saveToken(path: string, url: string, token: string): Promise<void> {
  const credentials = await readCredentials(path);
  credentials.gateways[url] = { token, savedAt: new Date().toISOString() };
  credentials.current = url;
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 });
  await chmod(temporary, 0o600); // a umask cannot widen it, but an existing file's mode is not changed by writeFile
  await rename(temporary, path);
}

/** The settings from the options, the environment and the credentials file. */
export async function loadSettings(options: { url?: string | undefined }, env: NodeJS.ProcessEnv): Promise<Settings> {
  const path = credentialsPath(env);
  const credentials = await readCredentials(path);
  const raw = options.url ?? env['FNIX_URL'] ?? credentials.current ?? DEFAULT_URL;
  const url = normalizeUrl(raw, options.url !== undefined ? '--url' : 'FNIX_URL');
  const fromEnv = env['FNIX_TOKEN'] || undefined;
  const saved = credentials.gateways[url]?.token;
  return {
    url,
    token: fromEnv ?? saved,
    tokenSource: fromEnv ? 'FNIX_TOKEN' : saved ? 'credentials' : undefined,
    key: env['FNIX_KEY'] || undefined,
    credentialsPath: path,
  };
}
