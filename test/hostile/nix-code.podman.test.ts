/**
 * @module
 * Hostile Nix code in a pushed packages.nix, through real git pushes to a running gateway: evaluations that read
 * host files (/etc/shadow, a secret of root's) or fetch from a server the test runs, a derivation whose builder
 * writes outside its output, `__noChroot`, a fixed-output derivation that would reach the network from its build,
 * and an import from a derivation. Each must be refused or contained: the push names packages.nix and the reason,
 * nothing of the host's files reaches any output or the store, the server receives no request, and `hello`
 * keeps answering alongside.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES_DIR, startTestGateway, TEST_TOKEN, type TestGateway } from '../helpers/gateway.ts';
import { git } from '../helpers/git.ts';
import { alongside, report } from './helpers.ts';

/** In the name of every derivation and file the attacks make, so that the test finds (and removes) them all. */
const MARK = `fnix-hostile-${randomBytes(6).toString('hex')}`;
/** A secret of root's that no pushed code may read: its content must appear in no output and no store path. */
const CANARY_FILE = `/root/${MARK}-canary`;
const CANARY = `canary-${randomBytes(16).toString('hex')}`;

let gateway: TestGateway;
let work: string;
let server: Server;
let port: number;
/** Requests the test's server received: any is a failure. */
const requests: string[] = [];
/** What the store held before the attacks. */
let storeBefore: Set<string>;
let shadowLines: string[];

const remote = () => `${gateway.url.replace('http://', `http://fnix:${TEST_TOKEN}@`)}/git/functions.git`;

/** A packages.nix: the offline set, plus `extra` (attributes, with `fnix` and `bb`, busybox's bin/, in scope). */
const packagesNix = (extra: string, prelude = '') => `let
  fnix = import <fnix> { };
  bb = "\${fnix.busybox}/bin";
  mk = attrs: derivation ({ system = builtins.currentSystem; builder = "\${bb}/sh"; } // attrs);
${prelude}in
fnix // {
${extra}
}
`;

/** Pushes `packagesNix` (and, when given, a function `probe` using `packages`) onto what is deployed. */
async function push(text: string, probe?: { packages: string[]; command: string[] }) {
  const dir = await mkdtemp(join(work, 'clone-'));
  const cloned = await git(work, 'clone', '--quiet', remote(), dir);
  expect(cloned.exitCode, cloned.all).toBe(0);
  await writeFile(join(dir, 'packages.nix'), text);
  if (probe) {
    await mkdir(join(dir, 'functions', 'probe'), { recursive: true });
    await writeFile(join(dir, 'functions', 'probe', 'function.json'), JSON.stringify(probe));
  }
  await git(dir, 'add', '--all');
  await git(dir, 'commit', '--quiet', '-m', 'hostile packages.nix');
  return git(dir, 'push', 'origin', 'main');
}

/** Store paths made since the test began whose files hold `text`. */
async function storePathsHolding(text: string): Promise<string[]> {
  const added = (await readdir('/nix/store')).filter((name) => !storeBefore.has(name)).map((name) => join('/nix/store', name));
  if (added.length === 0) return [];
  const { stdout } = await execa('grep', ['-rlF', '--', text, ...added], { reject: false });
  return stdout.split('\n').filter((line) => line !== '');
}

/** Checks that nothing of the host's secrets is in `output`, nor in any store path made since the test began. */
async function expectNoSecretIn(output: string): Promise<void> {
  expect(output).not.toContain(CANARY);
  for (const line of shadowLines) expect(output).not.toContain(line);
  expect(await storePathsHolding(CANARY)).toEqual([]);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fnix-hostile-nix-'));
  await writeFile(CANARY_FILE, `${CANARY}\n`, { mode: 0o600 });
  shadowLines = (await readFile('/etc/shadow', 'utf8')).split('\n').filter((line) => line.length > 8);
  server = createServer((request, response) => {
    requests.push(`${request.method} ${request.url}`);
    response.end('served\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  storeBefore = new Set(await readdir('/nix/store'));
  gateway = await startTestGateway({ functionsDir: EXAMPLES_DIR });
});
afterAll(async () => {
  await gateway?.close();
  await new Promise((resolve) => server?.close(resolve));
  await rm(CANARY_FILE, { force: true });
  await rm(work, { recursive: true, force: true });
  // What the attacks left in the store (their .drv files, the contained build's output): nothing roots it now.
  const left = (await readdir('/nix/store')).filter((name) => name.includes(MARK)).map((name) => join('/nix/store', name));
  if (left.length > 0) await execa('nix-store', ['--delete', ...left], { reject: false });
});

describe('evaluation of a pushed packages.nix', () => {
  const reads: Array<[string, string, RegExp]> = [
    ['builtins.readFile /etc/shadow', 'secret = builtins.readFile /etc/shadow;\n', /access to absolute path '\/etc\/shadow' is forbidden in restricted mode/],
    [`import of a file of root's`, `secret = import ${CANARY_FILE};\n`, /access to absolute path '\/root\/[^']+' is forbidden in restricted mode/],
    [
      "builtins.path, which would copy a file of root's into the store",
      `secret = builtins.readFile (builtins.path { path = ${CANARY_FILE}; });\n`,
      /access to absolute path '\/root\/[^']+' is forbidden in restricted mode/,
    ],
    ['builtins.readDir /', 'secret = builtins.toJSON (builtins.readDir /.);\n', /access to absolute path '\/' is forbidden in restricted mode/],
    [
      'fetchurl of a file:// URL',
      `secret = builtins.readFile (builtins.fetchurl "file://${CANARY_FILE}");\n`,
      /access to absolute path '\/root\/[^']+' is forbidden in restricted mode/,
    ],
    ['<nixpkgs> from the host', 'secret = import <nixpkgs> { };\n', /file 'nixpkgs' was not found in the Nix search path/],
  ];
  it.each(reads)('refuses %s: the push names packages.nix and why, and nothing of the file gets out', async (what, prelude, message) => {
    const hello = await alongside(gateway.url);
    const pushed = await push(packagesNix('', `  ${prelude}`).replace('in\nfnix //', 'in\nbuiltins.seq secret fnix //'));
    const figures = await hello.stop();
    expect(pushed.exitCode).not.toBe(0);
    expect(pushed.all).toMatch(/remote: +packages\.nix: does not evaluate: /);
    expect(pushed.all).toMatch(message);
    if (!what.includes('nixpkgs')) expect(pushed.all).toContain('pushed Nix code cannot read host files or the network');
    expect(pushed.all).toContain('the functions being served are unchanged');
    await expectNoSecretIn(pushed.all);
    expect(figures.failures).toBe(0);
    await report(`packages.nix: ${what}`, { push: 'refused, naming packages.nix and the path', secretInOutputOrStore: false, hello: figures });
  });

  const fetches: Array<[string, string]> = [
    ['builtins.fetchurl', `builtins.fetchurl "http://127.0.0.1:PORT/fetchurl"`],
    ['builtins.fetchTarball', `builtins.fetchTarball "http://127.0.0.1:PORT/tarball.tar.gz"`],
    ['builtins.fetchGit', `builtins.fetchGit "http://127.0.0.1:PORT/repository.git"`],
  ];
  it.each(fetches)('refuses %s of a local server: it receives no request', async (what, call) => {
    const pushed = await push(packagesNix('', `  secret = ${call.replace('PORT', String(port))};\n`).replace('in\nfnix //', 'in\nbuiltins.seq secret fnix //'));
    expect(pushed.exitCode).not.toBe(0);
    expect(pushed.all).toMatch(/remote: +packages\.nix: does not evaluate: access to URI 'http:\/\/127\.0\.0\.1:\d+\/[^']*' is forbidden in restricted mode/);
    expect(pushed.all).toContain('pushed Nix code cannot read host files or the network');
    expect(requests).toEqual([]);
    await report(`packages.nix: ${what} of a server on 127.0.0.1`, { push: 'refused at evaluation', requestsReceived: requests.length });
  });

  it('refuses an import from a derivation (a build during evaluation)', async () => {
    const built = `mk { name = "${MARK}-ifd"; args = [ "-c" "echo '{ }' > $out" ]; }`;
    const pushed = await push(packagesNix('', `  secret = import (${built});\n`).replace('in\nfnix //', 'in\nbuiltins.seq secret fnix //'));
    expect(pushed.exitCode).not.toBe(0);
    expect(pushed.all).toContain("because the option 'allow-import-from-derivation' is disabled");
    expect(existsSync((await readdir('/nix/store')).find((n) => n.includes(`${MARK}-ifd`) && !n.endsWith('.drv')) ?? '/nonexistent')).toBe(false);
    await report('packages.nix: import from derivation', { push: 'refused at evaluation, nothing built' });
  });
});

describe('builds of a pushed packages.nix', () => {
  it('contains a builder that writes outside its output: nothing reaches the host, and it ran as a build user', async () => {
    const outside = [`/tmp/${MARK}-tmp`, `/root/${MARK}-root`, `/nix/store/${'a'.repeat(32)}-${MARK}-store`, `/etc/${MARK}-etc`];
    const script = [
      ...outside.map(
        (path) => `if $bb/echo escaped > ${path} 2>/dev/null; then $bb/echo "${path}: written"; else $bb/echo "${path}: refused"; fi >> $TMPDIR/log`,
      ),
      `$bb/cat ${CANARY_FILE} /etc/shadow >> $TMPDIR/log 2>&1 || true`,
      '$bb/echo "uid_map: $($bb/cat /proc/self/uid_map)" >> $TMPDIR/log',
      '$bb/mkdir -p $out/bin && $bb/cp $TMPDIR/log $out/log',
      `$bb/printf '#!%s/sh\\n%s/cat %s/log\\n' $bb $bb $out > $out/bin/escape && $bb/chmod 0555 $out/bin/escape`,
    ].join('\n');
    const hello = await alongside(gateway.url);
    const pushed = await push(packagesNix(`  escape = mk { name = "${MARK}-escape"; inherit bb; args = [ "-c" ''\n${script}\n'' ]; };`), {
      packages: ['escape'],
      command: ['escape'],
    });
    const figures = await hello.stop();
    expect(pushed.exitCode, pushed.all).toBe(0);
    const seen = await (await fetch(`${gateway.url}/fn/probe`)).text();
    for (const path of outside) expect(existsSync(path), path).toBe(false);
    // What the builder saw: its writes went to the sandbox's own folders or nowhere, and its uid 1000 is a build user's.
    const hostUid = Number(/uid_map: +\d+ +(\d+) +1/.exec(seen)?.[1]);
    const buildUsers = (await execa('getent', ['group', 'nixbld'])).stdout.split(':')[3]!.split(',');
    const buildUids = await Promise.all(buildUsers.map(async (user) => Number((await execa('id', ['-u', user])).stdout)));
    expect(buildUids).toContain(hostUid);
    expect(hostUid).not.toBe(0);
    await expectNoSecretIn(seen + pushed.all);
    expect(figures.failures).toBe(0);
    await report('packages.nix: a builder that writes to /tmp, /root, /nix/store and /etc, and reads root secrets', {
      push: 'live (the build is contained)',
      builderSaw: seen.trim().split('\n').slice(0, outside.length).join('; '),
      onTheHost: 'none of the four paths exists',
      buildUser: `host uid ${hostUid}`,
      secretInOutputOrStore: false,
      hello: figures,
    });
  });

  it('refuses __noChroot, before its builder runs', async () => {
    const marker = `/tmp/${MARK}-nochroot`;
    const pushed = await push(
      packagesNix(`  nochroot = mk { name = "${MARK}-nochroot"; __noChroot = true; args = [ "-c" "\${bb}/touch ${marker}; \${bb}/mkdir -p $out/bin" ]; };`),
      { packages: ['nochroot', 'busybox'], command: ['sh', '-c', 'true'] },
    );
    expect(pushed.exitCode).not.toBe(0);
    expect(pushed.all).toMatch(
      /functions\/probe: building package 'nochroot' from packages\.nix failed: derivation '[^']+' has '__noChroot' set, but that's not allowed when 'sandbox' is 'true'/,
    );
    expect(existsSync(marker)).toBe(false);
    await report('packages.nix: a derivation with __noChroot = true', { push: 'refused by Nix (sandbox = true)', builderRan: false });
  });

  it('refuses a fixed-output derivation, which Nix would build with the host network: the server receives nothing', async () => {
    const fod = [
      `  fetcher = mk { name = "${MARK}-fod"; outputHashMode = "flat"; outputHashAlgo = "sha256";`,
      `    outputHash = "${'0'.repeat(52)}";`,
      `    args = [ "-c" "\${bb}/wget -q -O $out http://127.0.0.1:${port}/fixed-output" ]; };`,
    ].join('\n');
    const pushed = await push(packagesNix(fod), { packages: ['fetcher', 'busybox'], command: ['sh', '-c', 'true'] });
    expect(pushed.exitCode).not.toBe(0);
    expect(pushed.all).toMatch(
      /functions\/probe: packages\.nix would have Nix build \/nix\/store\/\w{32}-fnix-hostile-\w+-fod\.drv \(a fixed-output derivation\)/,
    );
    expect(pushed.all).toContain('pushed Nix code may not reach the network');
    expect(requests).toEqual([]);
    await report('packages.nix: a fixed-output derivation whose builder fetches from 127.0.0.1', {
      push: 'refused before any build',
      requestsReceived: requests.length,
    });
  });
});
