/**
 * @module
 * How fnix has Nix build. Every build runs in Nix's sandbox (Debian's nix.conf turns it off, and Nix would fall back
 * to building outside it where the sandbox cannot be set up): {@link SANDBOX_OPTIONS}. A pushed set's derivations get
 * more (see {@link realiseChecked}): built by a build user, never root; and since Nix gives a fixed-output
 * derivation the host's network even in the sandbox (it is how sources are fetched), none is built: the plan is
 * read first, and what it would build is checked before anything is.
 */
import { execa } from 'execa';
import { FnixError } from '../errors.ts';
import { firstErrorLine } from './package-set.ts';

/** The options of every build fnix runs: in the sandbox, or not at all. */
export const SANDBOX_OPTIONS: readonly string[] = ['--option', 'sandbox', 'true', '--option', 'sandbox-fallback', 'false'];

/** More options for pushed sets: a binary cache that fails is an error, not a reason to build instead. */
const CHECKED_OPTIONS: readonly string[] = ['--option', 'fallback', 'false'];

/** Derivations shown to `nix show-derivation` at once. */
const SHOW_BATCH = 200;

/** What Nix would do to realise some outputs (`nix-store --realise --dry-run`). */
export interface RealisePlan {
  /** Derivations it would build. */
  build: string[];
  /** Store paths it would fetch from a binary cache. */
  fetch: string[];
  /** Store paths it has no way to make. */
  unknown: string[];
}

/** A finished Nix process, as the resolver keeps it. */
export interface NixRunResult {
  ok: boolean;
  timedOut: boolean;
  stdout: string;
  stderrTail: string;
}

/** Runs one Nix command (the resolver's, which counts them and keeps the tail of stderr). */
export type RunNix = (command: string, args: string[], timeoutMs: number) => Promise<NixRunResult>;

/** Options of {@link realiseChecked}. */
export interface RealiseCheckedOptions {
  /** `<drv>!<output>` of each output wanted. */
  targets: string[];
  /** GC roots: `<rootLink>`, `<rootLink>-2`, `<rootLink>-bin`... as nix-build names them. */
  rootLink: string;
  /** The substituter options of this build (runtime/nix/substituters.ts). */
  substitution: readonly string[];
  /** What the refusals name the set as (`packages.nix`). */
  setDescription: string;
  run: RunNix;
  timeoutMs: number;
}

/**
 * Realises a pushed set's outputs in three steps. The plan (a dry run) names what Nix would build: a fixed-output
 * derivation or a builtin fetcher among them is refused, before anything runs. Then what the plan fetches is
 * fetched, which builds nothing; and only then the outputs, whose every missing input is by now either fetched or a
 * derivation the plan checked, so that a binary cache that goes away in between cannot make Nix build an
 * unchecked one instead.
 * @throws FnixError PACKAGE_BUILD_FAILED naming the refused derivations.
 * @returns the last Nix run (a failed one says why in its stderr).
 */
export async function realiseChecked(options: RealiseCheckedOptions): Promise<NixRunResult> {
  const { targets, substitution, run, timeoutMs } = options;
  const common = [...substitution, ...SANDBOX_OPTIONS, ...CHECKED_OPTIONS];
  const dryRun = await execa('nix-store', ['--realise', '--dry-run', ...common, ...targets], { reject: false, timeout: timeoutMs, stdin: 'ignore' });
  if (dryRun.exitCode !== 0 || dryRun.timedOut) {
    return { ok: false, timedOut: dryRun.timedOut, stdout: '', stderrTail: dryRun.stderr.split('\n').slice(-40).join('\n') };
  }
  const plan = parseRealisePlan(dryRun.stderr);
  const refused = await refusedDerivations(plan.build, timeoutMs);
  if (refused.length > 0) {
    const shown = refused.map((r) => `${r.drvPath} (${r.why})`).join(', ');
    throw new FnixError(
      'PACKAGE_BUILD_FAILED',
      `${options.setDescription} would have Nix build ${shown}; Nix gives such a build the host's network, and pushed Nix code may not ` +
        'reach the network: fetch at evaluation from a URL FNIX_ALLOWED_URIS allows, or add the file to the repository',
      { details: { packageSet: options.setDescription, refused: refused.map((r) => r.drvPath) } },
    );
  }
  if (plan.fetch.length > 0) {
    const fetched = await run('nix-store', ['--realise', ...common, ...plan.fetch], timeoutMs);
    if (!fetched.ok) return fetched;
  }
  return run('nix-store', ['--realise', ...common, ...targets, '--add-root', options.rootLink, '--indirect'], timeoutMs);
}

/**
 * Reads what `nix-store --realise --dry-run` prints (on stderr): headers such as `these 2 derivations will be
 * built:` or `this path will be fetched (0.01 MiB download, 0.05 MiB unpacked):`, each followed by its store
 * paths, indented.
 */
export function parseRealisePlan(output: string): RealisePlan {
  const plan: RealisePlan = { build: [], fetch: [], unknown: [] };
  let section: keyof RealisePlan | undefined;
  for (const line of output.split('\n')) {
    const path = /^\s+(\/nix\/store\/\S+)$/.exec(line)?.[1];
    if (path !== undefined) {
      if (section) plan[section].push(path);
      continue;
    }
    if (/will be built:$/.test(line)) section = 'build';
    else if (/will be fetched/.test(line)) section = 'fetch';
    else if (/don't know how to build/.test(line)) section = 'unknown';
    else section = undefined;
  }
  return plan;
}

/** The derivations among `drvPaths` that fnix does not build for pushed code, and why. */
async function refusedDerivations(drvPaths: string[], timeoutMs: number): Promise<{ drvPath: string; why: string }[]> {
  const refused: { drvPath: string; why: string }[] = [];
  for (let i = 0; i < drvPaths.length; i += SHOW_BATCH) {
    const batch = drvPaths.slice(i, i + SHOW_BATCH);
    const shown = await execa('nix', ['--extra-experimental-features', 'nix-command', 'show-derivation', ...batch], {
      reject: false,
      timeout: timeoutMs,
      stdin: 'ignore',
    });
    if (shown.exitCode !== 0 || shown.timedOut) {
      throw new FnixError('PACKAGE_BUILD_FAILED', `reading the derivations to build failed: ${firstErrorLine(shown.stderr)}`, {
        details: { log: shown.stderr.split('\n').slice(-40).join('\n') },
      });
    }
    const derivations = JSON.parse(shown.stdout) as Record<string, { builder: string; outputs: Record<string, { hash?: string; hashAlgo?: string }> }>;
    for (const [drvPath, drv] of Object.entries(derivations)) {
      if (Object.values(drv.outputs).some((o) => o.hash || o.hashAlgo)) refused.push({ drvPath, why: 'a fixed-output derivation' });
      else if (drv.builder.startsWith('builtin:')) refused.push({ drvPath, why: `Nix's ${drv.builder}` });
    }
  }
  return refused;
}

/**
 * Throws unless Nix builds as build users: with an empty build-users-group, builds run as root (in the sandbox,
 * but as root), which fnix does not allow pushed code.
 * @throws FnixError PACKAGE_BUILD_FAILED saying what to set.
 */
export async function checkBuildUsers(timeoutMs = 30_000): Promise<void> {
  const result = await execa('nix', ['--extra-experimental-features', 'nix-command', 'show-config', '--json'], {
    reject: false,
    timeout: timeoutMs,
    stdin: 'ignore',
  });
  const group = result.exitCode === 0 ? (JSON.parse(result.stdout) as Record<string, { value?: unknown }>)['build-users-group']?.value : undefined;
  if (typeof group === 'string' && group.trim() !== '') return;
  const why =
    result.exitCode === 0 ? "Nix's build-users-group is empty, so builds would run as root" : `nix show-config failed: ${firstErrorLine(result.stderr)}`;
  throw new FnixError(
    'PACKAGE_BUILD_FAILED',
    `${why}; fnix builds pushed Nix code only as a build user: set build-users-group = nixbld in /etc/nix/nix.conf`,
    {},
  );
}
