/**
 * @module
 * The environment a function's packages need beyond PATH, derived from its closure as nixpkgs' setup hooks
 * derive it in a nix-shell: every `lib/python3.X/site-packages` folder in the closure goes on PYTHONPATH,
 * so a function that declares `python3` and `python3Packages.requests` imports requests; and a closure with
 * nixpkgs' `cacert` layout (`etc/ssl/certs/ca-bundle.crt`) sets SSL_CERT_FILE, as nixpkgs' cacert hook does.
 * Computed once per build, never per invocation.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';

/** `python3.11` and the like: the folders under lib/ that hold a site-packages. */
const PYTHON_DIR = /^python3\.\d+$/;

/**
 * The variables for a closure (store paths, in any order): `PYTHONPATH` when any path has Python libraries,
 * their site-packages folders in closure order. Empty when there is nothing to set.
 */
export async function packageEnvironment(closure: readonly string[]): Promise<Record<string, string>> {
  const sitePackages: string[] = [];
  let caBundle: string | undefined;
  for (const storePath of closure) {
    for (const entry of await entriesOf(path.join(storePath, 'lib'))) {
      if (!PYTHON_DIR.test(entry)) continue;
      const dir = path.join(storePath, 'lib', entry, 'site-packages');
      if ((await entriesOf(dir)).length > 0) sitePackages.push(dir);
    }
    const bundle = path.join(storePath, CA_BUNDLE);
    if (caBundle === undefined && (await isFile(bundle))) caBundle = bundle;
  }
  const env: Record<string, string> = {};
  if (sitePackages.length > 0) env['PYTHONPATH'] = sitePackages.join(':');
  if (caBundle !== undefined) env['SSL_CERT_FILE'] = caBundle;
  return env;
}

/** Where nixpkgs' cacert (and the offline set's) keeps the CA certificates. */
const CA_BUNDLE = 'etc/ssl/certs/ca-bundle.crt';

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

/** The names in a folder; none when it is missing or not a folder. */
async function entriesOf(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}
