/**
 * @module
 * Puts the runtime together: Podman, the package set, the agent and rootfs, the container pool and the
 * registry of served functions (which deployments fill). The gateway receives the result.
 */
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { buildAgent } from './agent/build.ts';
import { ContainerLauncher } from './container/launcher.ts';
import { prepareRootfs } from './container/rootfs.ts';
import { FnixError } from './errors.ts';
import { FunctionRegistry } from './functions/registry.ts';
import type { Logger } from './log.ts';
import { checkPackageSet, choosePackageSet, type PackageSet } from './nix/package-set.ts';
import { PackageResolver } from './nix/resolve.ts';
import { type BinaryCacheSettings, Substituters } from './nix/substituters.ts';
import { readPodmanInfo, type PodmanInfo } from './podman/info.ts';
import { Podman } from './podman/podman.ts';
import type { ContainerLimits } from './podman/run.ts';
import { writeSeccompProfile } from './podman/seccomp.ts';
import { Pool, type PoolStats } from './pool/pool.ts';
import { PoolRunner } from './runner.ts';
import { FileSecretStore } from './secrets/file-store.ts';
import type { SecretStore } from './secrets/store.ts';
import { ServeInstances } from './serve/instances.ts';
import { guardSpawn } from './spawn-guard.ts';
import { lockStateDir, type StateLock } from './state-lock.ts';

/** Everything the runtime is configured with (gateway/config.ts reads it from the environment). */
export interface RuntimeOptions {
  /** fnix's own files: builds, GC roots, the agent, container folders. */
  stateDir: string;
  /** FNIX_PACKAGES: a Nix expression for the package set; undefined picks one. */
  packages?: string | undefined;
  /**
   * FNIX_SUBSTITUTERS, FNIX_TRUSTED_PUBLIC_KEYS, FNIX_REQUIRE_SIGS: binary caches and keys added to nix.conf's,
   * for every package set but the offline set. @default nix.conf's only, signatures required
   */
  binaryCaches?: BinaryCacheSettings | undefined;
  /** FNIX_ALLOWED_URIS: URL prefixes that a pushed repository's packages.nix may fetch from. @default none */
  allowedUris?: readonly string[] | undefined;
  poolSize: number;
  maxContainers: number;
  idleTtlMs: number;
  queueTimeoutMs: number;
  maxOutputBytes: number;
  limits: ContainerLimits;
  log: Logger;
  /**
   * Runs once the state folder is this process's (locked), before anything else is written to it: the
   * deployments remove what a dead push left there (deployments/leftovers.ts), which a full disk
   * needs first. Passed in, so that the runtime knows nothing of deployments.
   */
  cleanStateDir?: (() => Promise<void>) | undefined;
  /**
   * Opens the secret store, once the state folder is locked (runtime/secrets/). Throws SECRETS_KEY_INVALID
   * when the secrets kept do not decrypt. @default the state folder's store, its key in secrets.key
   */
  openSecrets?: ((stateDir: string) => Promise<SecretStore>) | undefined;
}

/** Health facts for /healthz. */
export interface RuntimeHealth {
  podman: PodmanInfo;
  nix: { version: string };
  packageSet: { kind: PackageSet['kind']; description: string };
  pool: PoolStats;
}

/** A started runtime. */
export interface Runtime {
  registry: FunctionRegistry;
  runner: PoolRunner;
  pool: Pool;
  /** Serve functions' instances (runtime/serve/). */
  instances: ServeInstances;
  /** The secrets functions declare, read at each invocation and instance start (runtime/secrets/). */
  secrets: SecretStore;
  resolver: PackageResolver;
  health(): RuntimeHealth;
  /** Stops the serve instances, then the pool (waiting up to `graceMs` for running invocations), and removes every container. */
  close(graceMs?: number): Promise<void>;
}

/** Starts the runtime; throws with the fix when Podman or Nix does not work. */
export async function startRuntime(options: RuntimeOptions): Promise<Runtime> {
  // Every podman, nix and git start goes through execa: out of descriptors, one fails, not the process.
  guardSpawn();
  const stateDir = resolve(options.stateDir);
  const lock = await lockStateDir(stateDir, { tidy: options.cleanStateDir });
  try {
    return await assemble(options, stateDir, lock);
  } catch (error) {
    await lock.release();
    throw error;
  }
}

async function assemble(options: RuntimeOptions, stateDir: string, lock: StateLock): Promise<Runtime> {
  const { log } = options;
  // First: a key that does not open the secrets kept stops the start before anything else is done.
  const secrets = await (options.openSecrets ?? ((dir: string) => FileSecretStore.open({ stateDir: dir })))(stateDir);
  const podmanDir = join(stateDir, 'podman');
  await mkdir(podmanDir, { recursive: true, mode: 0o700 });
  const podman = await Podman.create({ cwd: podmanDir });
  const podmanInfo = await readPodmanInfo(podman).catch((error: unknown) => {
    throw new FnixError('RUNTIME_UNAVAILABLE', `podman does not work (${describe(error)}); install it with: apt-get install podman runc`, { cause: error });
  });
  const nixVersion = await execa('nix-build', ['--version']).then(
    (r) => String(r.stdout).trim(),
    (error: unknown) => {
      throw new FnixError('RUNTIME_UNAVAILABLE', `nix does not work (${describe(error)}); install it with: apt-get install nix-bin`, { cause: error });
    },
  );
  const packageSet = await choosePackageSet(options.packages);
  await checkPackageSet(packageSet);
  log.info('package set', { kind: packageSet.kind, set: packageSet.description });

  const substituters = new Substituters({ ...options.binaryCaches, log });
  const resolver = new PackageResolver({ packageSet, gcRootsDir: join(stateDir, 'gcroots'), substituters, allowedUris: options.allowedUris ?? [] });
  const agent = await buildAgent(join(stateDir, 'agent')).catch((error: unknown) => {
    throw new FnixError(
      'RUNTIME_UNAVAILABLE',
      `the container agent could not be built (${describe(error)}); install a C compiler with: apt-get install gcc libc6-dev`,
      { cause: error },
    );
  });
  const rootfs = await prepareRootfs(join(stateDir, 'rootfs'), agent);
  const seccompProfile = await writeSeccompProfile(join(stateDir, 'seccomp.json'));
  const launcher = new ContainerLauncher({ podman, rootfs, seccompProfile, stateDir, limits: options.limits });
  const leftovers = await launcher.removeLeftovers().catch((error: unknown) => {
    throw new FnixError('RUNTIME_UNAVAILABLE', `podman could not list or remove containers (${describe(error)})`, { cause: error });
  });
  if (leftovers > 0) log.info('removed containers left by an earlier run', { count: leftovers });

  const pool = new Pool({
    source: launcher,
    size: options.poolSize,
    maxContainers: options.maxContainers,
    idleTtlMs: options.idleTtlMs,
    queueTimeoutMs: options.queueTimeoutMs,
    onError: (error) => log.error('starting a warm container failed', { error: describe(error) }),
  });
  const registry = new FunctionRegistry();
  try {
    await pool.start();
  } catch (error) {
    await pool.close(0);
    throw new FnixError('RUNTIME_UNAVAILABLE', `no container could be started (${describe(error)}); see \`podman info\``, { cause: error });
  }
  log.info('pool ready', { ...pool.stats() });
  const instances = new ServeInstances({ pool, log, queueTimeoutMs: options.queueTimeoutMs, secrets });

  return {
    registry,
    runner: new PoolRunner({ pool, maxOutputBytes: options.maxOutputBytes, secrets }),
    pool,
    instances,
    secrets,
    resolver,
    health: () => ({
      podman: podmanInfo,
      nix: { version: nixVersion },
      packageSet: { kind: packageSet.kind, description: packageSet.description },
      pool: pool.stats(),
    }),
    close: async (graceMs) => {
      await instances.close(graceMs);
      await pool.close(graceMs);
      await lock.release();
    },
  };
}

function describe(error: unknown): string {
  const e = error as { shortMessage?: string; message?: string; stderr?: unknown };
  return String(e.stderr || e.shortMessage || e.message || error);
}
