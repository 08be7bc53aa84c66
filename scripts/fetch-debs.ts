/**
 * @module
 * Set-up's first step for the offline package set: resolves the Debian packages that
 * runtime/nix/offline/debian.json names, with their dependency closure, to the versions apt can download
 * now; downloads the archives that are not cached yet (`apt-get download`, checked against apt's SHA256);
 * imports each into the Nix store (`nix-store --add-fixed`); and writes runtime/nix/offline/lock.json, from
 * which runtime/nix/offline/default.nix builds one store path per package group, in dependency order.
 *
 *   node --import tsx scripts/fetch-debs.ts [--cache /var/cache/fnix/debs]
 *
 * Nothing here reads the host's installed files: only apt's package lists and the archives themselves.
 * A lock is written only when it changes, so a second run leaves every store path as it was.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const OFFLINE_DIR = fileURLToPath(new URL('../runtime/nix/offline/', import.meta.url));
const SPEC_FILE = path.join(OFFLINE_DIR, 'debian.json');
const LOCK_FILE = path.join(OFFLINE_DIR, 'lock.json');
const DEFAULT_CACHE = '/var/cache/fnix/debs';
const ROOTS_DIR = '/nix/var/nix/gcroots/fnix/debs';

interface Spec {
  roots: string[];
  exclude: string[];
  groups: Record<string, string[]>;
}

/** One Debian package as apt describes the version chosen. */
interface Deb {
  name: string;
  version: string;
  /** Path in the archive, for messages. */
  filename: string;
  sha256: string;
  /** Names of the packages it depends on (after choosing alternatives). */
  depends: string[];
}

/** The lock: what default.nix builds. */
interface Lock {
  comment: string;
  /** What the lock was resolved from: debian.json and apt's lists (names, sizes, times). */
  source: string;
  debs: Record<string, { version: string; file: string; sha256: string }>;
  /** In dependency order: every group's deps come before it. */
  groups: { name: string; version: string; debs: string[]; deps: string[] }[];
}

/** apt-cache's record of one version. */
type Record_ = Map<string, string>;

function log(message: string): void {
  process.stderr.write(`fnix setup: ${message}\n`);
}

/** `apt-cache show` of the names, parsed into records (every version, newest first, per package). */
async function showRecords(names: string[]): Promise<Map<string, Record_[]>> {
  const result = await execa('apt-cache', ['show', ...names], { reject: false, stdin: 'ignore' });
  const byName = new Map<string, Record_[]>();
  for (const block of result.stdout.split(/\n\n+/)) {
    const fields: Record_ = new Map();
    let last = '';
    for (const line of block.split('\n')) {
      if (/^\s/.test(line) && last) fields.set(last, `${fields.get(last)}\n${line.trim()}`);
      else {
        const colon = line.indexOf(':');
        if (colon <= 0) continue;
        last = line.slice(0, colon);
        fields.set(last, line.slice(colon + 1).trim());
      }
    }
    const name = fields.get('Package');
    if (!name) continue;
    byName.set(name, [...(byName.get(name) ?? []), fields]);
  }
  return byName;
}

/** Dependency clauses of a record: each a list of alternatives, `{ name, version? }` with `=` pins kept. */
function clausesOf(record: Record_): { name: string; pinned?: string }[][] {
  const text = [record.get('Pre-Depends'), record.get('Depends')].filter(Boolean).join(', ');
  if (!text) return [];
  return text.split(',').map((clause) =>
    clause.split('|').map((alternative) => {
      const match = /^\s*([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9]+)?\s*(?:\(\s*([<>=]+)\s*([^)]+)\))?/.exec(alternative);
      if (!match) throw new Error(`cannot read the dependency ${JSON.stringify(alternative)}`);
      return match[2] === '=' ? { name: match[1]!, pinned: match[3]!.trim() } : { name: match[1]! };
    }),
  );
}

/** Resolves the closure of the roots to one downloadable version per package. */
async function resolveClosure(spec: Spec): Promise<Map<string, Deb>> {
  const excluded = new Set(spec.exclude);
  const chosen = new Map<string, Deb>();
  const pins = new Map<string, string>();
  const records = new Map<string, Record_[]>();
  let frontier = [...spec.roots];
  while (frontier.length > 0) {
    const unknown = frontier.filter((n) => !records.has(n));
    if (unknown.length > 0) {
      const found = await showRecords(unknown);
      for (const name of unknown) records.set(name, found.get(name) ?? []);
    }
    const next: string[] = [];
    const picked = new Map<string, Record_>();
    for (const name of frontier) {
      if (chosen.has(name) || picked.has(name)) continue;
      const downloadable = (records.get(name) ?? []).filter((r) => r.get('Filename'));
      const pin = pins.get(name);
      const record = pin ? downloadable.find((r) => r.get('Version') === pin) : downloadable[0];
      if (!record) {
        throw new Error(`apt knows no downloadable ${name}${pin ? ` ${pin}` : ''}: run apt-get update (the offline set needs Debian's bookworm archive)`);
      }
      picked.set(name, record);
    }
    // Every alternative of every clause, looked up in one apt-cache run.
    const alternativesAll = [...picked.values()].flatMap((r) =>
      clausesOf(r)
        .flat()
        .map((a) => a.name),
    );
    const known = await knownPackages(
      [...new Set(alternativesAll)].filter((n) => !excluded.has(n)),
      records,
    );
    for (const [name, record] of picked) {
      const depends: string[] = [];
      for (const alternatives of clausesOf(record)) {
        // The first alternative that is a real, wanted package; virtual ones are found through their
        // other alternatives (libgcc-s1 | libgcc1), and a clause with none is dropped.
        const pick = alternatives.find((a) => known.has(a.name));
        if (!pick) continue;
        if (pick.pinned) pins.set(pick.name, pick.pinned);
        if (pick.name !== name && !depends.includes(pick.name)) depends.push(pick.name);
        next.push(pick.name);
      }
      chosen.set(name, {
        name,
        version: record.get('Version')!,
        filename: record.get('Filename')!,
        sha256: record.get('SHA256')!,
        depends,
      });
    }
    frontier = next.filter((n) => !chosen.has(n));
  }
  return chosen;
}

/** Which of the names apt can download (looked up once each, remembered in `records`). */
async function knownPackages(names: string[], records: Map<string, Record_[]>): Promise<Set<string>> {
  const unknown = names.filter((n) => !records.has(n));
  if (unknown.length > 0) {
    const found = await showRecords(unknown);
    for (const name of unknown) records.set(name, found.get(name) ?? []);
  }
  return new Set(names.filter((n) => (records.get(n) ?? []).some((r) => r.get('Filename'))));
}

/**
 * Packs Debian packages into groups: the spec's groups, then any dependency cycle merged into one group
 * (Nix derivations cannot refer to each other in a cycle), in dependency order.
 */
function groupPackages(debs: Map<string, Deb>, spec: Spec): Lock['groups'] {
  const groupOf = new Map<string, string>();
  for (const [group, members] of Object.entries(spec.groups)) {
    for (const member of members) if (debs.has(member)) groupOf.set(member, group);
  }
  for (const name of debs.keys()) if (!groupOf.has(name)) groupOf.set(name, name);
  // Merge strongly connected groups until the graph is acyclic (Tarjan's algorithm, repeated).
  for (;;) {
    const edges = new Map<string, Set<string>>();
    for (const deb of debs.values()) {
      const from = groupOf.get(deb.name)!;
      const set = edges.get(from) ?? new Set<string>();
      for (const dep of deb.depends) if (groupOf.get(dep) !== from) set.add(groupOf.get(dep)!);
      edges.set(from, set);
    }
    const cycles = stronglyConnected(edges).filter((c) => c.length > 1);
    if (cycles.length === 0) break;
    for (const cycle of cycles) {
      const keep = cycle.find((g) => g in spec.groups) ?? [...cycle].sort()[0]!;
      log(`packages ${cycle.join(', ')} depend on each other: one store path, ${keep}`);
      for (const [name, group] of groupOf) if (cycle.includes(group)) groupOf.set(name, keep);
    }
  }
  const groups = new Map<string, { name: string; version: string; debs: string[]; deps: Set<string> }>();
  for (const deb of [...debs.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const name = groupOf.get(deb.name)!;
    const group = groups.get(name) ?? { name, version: '', debs: [], deps: new Set<string>() };
    group.debs.push(deb.name);
    if (deb.name === name || (!group.version && !(name in spec.groups))) group.version = deb.version;
    for (const dep of deb.depends) if (groupOf.get(dep) !== name) group.deps.add(groupOf.get(dep)!);
    groups.set(name, group);
  }
  // A named group's version: its first listed member's (python3's is python3's).
  for (const [name, members] of Object.entries(spec.groups)) {
    const group = groups.get(name);
    const first = members.find((m) => debs.has(m));
    if (group && first) group.version = debs.get(first)!.version;
  }
  const ordered: Lock['groups'] = [];
  const done = new Set<string>();
  const visit = (name: string) => {
    if (done.has(name)) return;
    done.add(name);
    const group = groups.get(name)!;
    const deps = [...group.deps].sort();
    for (const dep of deps) visit(dep);
    ordered.push({ name, version: group.version, debs: group.debs, deps });
  };
  for (const name of [...groups.keys()].sort()) visit(name);
  return ordered;
}

/** Tarjan's strongly connected components. */
function stronglyConnected(edges: Map<string, Set<string>>): string[][] {
  let index = 0;
  const indices = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const connect = (v: string) => {
    indices.set(v, index);
    low.set(v, index);
    index += 1;
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!indices.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, indices.get(w)!));
    }
    if (low.get(v) === indices.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      components.push(component);
    }
  };
  for (const v of edges.keys()) if (!indices.has(v)) connect(v);
  return components;
}

/** The cache's file name for a package: a valid store path name (Debian versions may hold `~` and `:`). */
function cacheFileOf(deb: Deb): string {
  return `${deb.name}_${deb.version.replace(/[^A-Za-z0-9+._-]/g, '_')}.deb`;
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Downloads the archives missing from the cache, checking each against apt's SHA256. */
async function download(debs: Deb[], cache: string): Promise<void> {
  const missing: Deb[] = [];
  for (const deb of debs) {
    const file = path.join(cache, cacheFileOf(deb));
    if (!existsSync(file)) missing.push(deb);
  }
  if (missing.length === 0) return;
  log(`downloading ${missing.length} Debian archives into ${cache}`);
  const work = path.join(cache, `.download-${process.pid}`);
  await mkdir(work, { recursive: true });
  try {
    const specs = missing.map((d) => `${d.name}=${d.version}`);
    for (let i = 0; i < specs.length; i += 50) {
      await execa('apt-get', ['download', '-qq', ...specs.slice(i, i + 50)], { cwd: work, stdin: 'ignore', stdout: 'ignore' });
    }
    for (const deb of missing) {
      // apt-get names the file with the version's epoch (8%3a6.9…), the archive's path without it.
      const downloaded = path.join(work, (await readdir(work)).find((f) => f.startsWith(`${deb.name}_`))!);
      const actual = await sha256Of(downloaded);
      if (actual !== deb.sha256) throw new Error(`${deb.filename}: SHA256 ${actual}, but apt's lists say ${deb.sha256}`);
      await rename(downloaded, path.join(cache, cacheFileOf(deb)));
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Adds the files to the store (a no-op for one already there) and makes each a GC root, in
 * /nix/var/nix/gcroots/fnix/debs: a package rebuilt after a garbage collection still finds its archives.
 */
async function importFiles(files: string[]): Promise<void> {
  const paths: string[] = [];
  for (let i = 0; i < files.length; i += 100) {
    const { stdout } = await execa('nix-store', ['--add-fixed', 'sha256', ...files.slice(i, i + 100)], { stdin: 'ignore' });
    paths.push(...stdout.split('\n').filter(Boolean));
  }
  const roots = ROOTS_DIR;
  const fresh = `${roots}.${process.pid}`;
  await mkdir(fresh, { recursive: true });
  for (const storePath of paths) await symlink(storePath, path.join(fresh, path.basename(storePath)));
  await rm(roots, { recursive: true, force: true });
  await rename(fresh, roots);
}

/** A fingerprint of what resolution reads: the spec and apt's package lists. */
async function sourceFingerprint(specText: string): Promise<string> {
  const hash = createHash('sha256').update(specText);
  const lists = '/var/lib/apt/lists';
  for (const name of (await readdir(lists).catch(() => [] as string[])).filter((n) => n.endsWith('_Packages')).sort()) {
    const info = await stat(path.join(lists, name));
    hash.update(`${name} ${info.size} ${info.mtimeMs}\n`);
  }
  return hash.digest('hex');
}

/** The current lock, when it was resolved from the same source and every archive it names is cached. */
async function currentLock(source: string, cache: string): Promise<Lock | undefined> {
  if (!existsSync(LOCK_FILE)) return undefined;
  const lock = JSON.parse(await readFile(LOCK_FILE, 'utf8')) as Lock;
  if (lock.source !== source) return undefined;
  return Object.values(lock.debs).every((d) => existsSync(path.join(cache, d.file))) ? lock : undefined;
}

async function main(): Promise<void> {
  const cacheFlag = process.argv.indexOf('--cache');
  const cache = cacheFlag > 0 ? path.resolve(process.argv[cacheFlag + 1]!) : process.env['FNIX_DEB_CACHE'] || DEFAULT_CACHE;
  const specText = await readFile(SPEC_FILE, 'utf8');
  const spec = JSON.parse(specText) as Spec;
  await mkdir(cache, { recursive: true });
  const source = await sourceFingerprint(specText);
  const current = await currentLock(source, cache);
  if (current) {
    // Resolved from the same lists before: only make sure the archives are in the store.
    await importFiles(Object.values(current.debs).map((d) => path.join(cache, d.file)));
    return;
  }
  const debs = await resolveClosure(spec);
  const sorted = [...debs.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  await download(sorted, cache);
  await importFiles(sorted.map((d) => path.join(cache, cacheFileOf(d))));
  const lock: Lock = {
    comment: "Written by scripts/fetch-debs.ts from apt's lists and runtime/nix/offline/debian.json; read by default.nix.",
    source,
    debs: Object.fromEntries(sorted.map((d) => [d.name, { version: d.version, file: cacheFileOf(d), sha256: d.sha256 }])),
    groups: groupPackages(debs, spec),
  };
  const text = `${JSON.stringify(lock, null, 2)}\n`;
  const previous = existsSync(LOCK_FILE) ? await readFile(LOCK_FILE, 'utf8') : '';
  if (text !== previous) {
    await writeFile(`${LOCK_FILE}.tmp`, text);
    await rename(`${LOCK_FILE}.tmp`, LOCK_FILE);
    log(`offline set: ${sorted.length} Debian packages in ${lock.groups.length} store paths (lock written)`);
  }
}

main().catch((error: unknown) => {
  log(`fetching the offline set's Debian packages failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
