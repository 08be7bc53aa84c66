/**
 * @module
 * The build step every function goes through before it is served (at start, and later on deploy):
 * validate the manifest, realise its Nix packages, check that its command can be found, and copy its
 * files into an immutable, content-addressed build folder.
 */
import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, readFile, readlink, rename, rm, stat, copyFile, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { FnixError } from '../errors.ts';
import { describeFsError } from '../fs-errors.ts';
import { packageEnvironment } from '../nix/environment.ts';
import type { PackageSet } from '../nix/package-set.ts';
import type { RecordedPackages } from '../nix/recorded.ts';
import type { PackageResolver } from '../nix/resolve.ts';
import { loadManifest, type Manifest } from './manifest.ts';
import { assertFunctionName } from './name.ts';
import type { FunctionVersion } from './version.ts';

/** The suffix of a build folder still being copied; one left by a process that died is removed at start. */
export const TEMPORARY_SUFFIX = '.tmp';

/** Options for {@link buildFunction}. */
export interface BuildOptions {
  name: string;
  /** The function's folder (holding function.json). */
  sourceDir: string;
  /** Where immutable builds are kept: `<buildsDir>/<name>/<version>/`. */
  buildsDir: string;
  resolver: PackageResolver;
  /** The set its packages are looked up in, such as the commit's packages.nix. @default the resolver's own */
  packageSet?: PackageSet | undefined;
  /** What a recorded deployment served for it: served again while the store has it (see PackageResolver.resolve). */
  recorded?: RecordedPackages | undefined;
}

/**
 * Builds one function. Throws FUNCTION_NAME_INVALID, MANIFEST_INVALID, PACKAGE_* or COMMAND_NOT_FOUND,
 * each naming what is wrong and where.
 */
export async function buildFunction(options: BuildOptions): Promise<FunctionVersion> {
  const { name, sourceDir } = options;
  assertFunctionName(name);
  const manifestFile = join(sourceDir, 'function.json');
  const manifest = await loadManifest(manifestFile);
  const resolution = await options.resolver.resolve(manifest.packages, { packageSet: options.packageSet, recorded: options.recorded });
  await checkCommand(
    manifest,
    sourceDir,
    resolution.packages.map((p) => p.storePath),
    manifestFile,
  );

  const hash = createHash('sha256');
  hash.update(JSON.stringify({ manifest, packages: resolution.packages }));
  await hashTree(sourceDir, '', hash);
  const version = hash.digest('hex').slice(0, 12);
  const dir = join(options.buildsDir, name, version);
  if (!(await exists(dir))) await copyImmutable(sourceDir, dir);
  const packageEnv = await packageEnvironment(resolution.closure);
  return { name, version, key: `${name}@${version}`, manifest, dir, resolution, packageEnv, builtAt: new Date() };
}

/** command[0] must be an executable in the function folder ("./x") or in a declared package's bin/. */
async function checkCommand(manifest: Manifest, sourceDir: string, storePaths: string[], file: string): Promise<void> {
  const program = manifest.command[0]!;
  if (program.startsWith('./')) {
    const path = join(sourceDir, program);
    // Followed through links (which stay inside the folder: the deploy checks see to that).
    const link = await lstat(path).catch(() => undefined);
    if (!link) throw commandNotFound(file, program, `there is no ${program} in the function folder`);
    const info = await stat(path).catch(() => undefined);
    if (!info) throw commandNotFound(file, program, `${program} is a symbolic link to nothing`);
    if (!info.isFile()) throw commandNotFound(file, program, `${program} is not a file`);
    if ((info.mode & 0o111) === 0) {
      throw commandNotFound(file, program, `${program} is not executable: run chmod +x ${program} and commit the mode`);
    }
    return;
  }
  for (const storePath of storePaths) {
    const info = await stat(join(storePath, 'bin', program)).catch(() => undefined);
    if (info?.isFile() && info.mode & 0o111) return;
  }
  const declared = manifest.packages.length ? manifest.packages.join(', ') : 'none';
  throw commandNotFound(
    file,
    program,
    `'${program}' is not in the bin/ folder of any declared package (packages: ${declared}); add the package that provides it to "packages"`,
  );
}

function commandNotFound(file: string, program: string, reason: string): FnixError {
  return new FnixError('COMMAND_NOT_FOUND', `${file}: field 'command.0' (value ${JSON.stringify(program)}): ${reason}`, {
    details: { file, field: 'command.0', value: program },
  });
}

/** Feeds names, modes, link targets and contents of the tree into `hash`, in a stable order. */
async function hashTree(root: string, relative: string, hash: ReturnType<typeof createHash>): Promise<void> {
  const entries = (await readdir(join(root, relative), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const entry of entries) {
    const path = join(relative, entry.name);
    const full = join(root, path);
    if (entry.isDirectory()) {
      hash.update(`d ${path}\0`);
      await hashTree(root, path, hash);
    } else if (entry.isSymbolicLink()) {
      hash.update(`l ${path} ${await readlink(full)}\0`);
    } else if (entry.isFile()) {
      const executable = ((await stat(full)).mode & 0o111) !== 0;
      hash.update(`f ${path} ${executable ? 'x' : '-'}\0`);
      hash.update(await readFile(full));
    }
  }
}

/** Copies the tree to `target` via a temporary folder; files become read-only, for everyone to read. */
async function copyImmutable(source: string, target: string): Promise<void> {
  const temporary = `${target}.${process.pid}.${Date.now()}${TEMPORARY_SUFFIX}`;
  const discard = async () => {
    await makeWritable(temporary).catch(() => {});
    await rm(temporary, { recursive: true, force: true });
  };
  try {
    await mkdir(temporary, { recursive: true });
    await copyTree(source, temporary);
    await chmod(temporary, 0o555);
  } catch (error) {
    // A full disk, say: what was copied goes, and the message says why in words.
    await discard();
    throw new FnixError('FUNCTION_BUILD_FAILED', `its files could not be copied into the build folder: ${describeFsError(error)}`, { cause: error });
  }
  await rename(temporary, target).catch(async (error: NodeJS.ErrnoException) => {
    await discard();
    if (!(await exists(target))) throw error; // otherwise an identical build won the race
  });
}

async function copyTree(source: string, target: string): Promise<void> {
  for (const entry of await readdir(source, { withFileTypes: true })) {
    const from = join(source, entry.name);
    const to = join(target, entry.name);
    if (entry.isDirectory()) {
      await mkdir(to);
      await copyTree(from, to);
      await chmod(to, 0o555);
    } else if (entry.isSymbolicLink()) {
      await symlink(await readlink(from), to);
    } else if (entry.isFile()) {
      await copyFile(from, to);
      await chmod(to, (await stat(from)).mode & 0o111 ? 0o555 : 0o444);
    }
    // sockets, FIFOs and devices are not function files: skipped
  }
}

/** Makes `dir` and every folder under it writable again (builds are read-only trees), so that it can be removed. */
export async function makeWritable(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) await makeWritable(join(dir, entry.name));
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}
