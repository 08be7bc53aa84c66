/**
 * @module
 * What the baselines run on: the same busybox store path the functions use, fnix's own rootfs, and the
 * same Podman options (runc, the overlay store mount), so that (a), (b) and (c) differ from fnix only
 * in how a command reaches a container.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { buildAgent } from '../runtime/agent/build.ts';
import { INSTANCE_LABEL, instanceOf } from '../runtime/container/launcher.ts';
import { prepareRootfs } from '../runtime/container/rootfs.ts';
import { choosePackageSet } from '../runtime/nix/package-set.ts';
import { PackageResolver } from '../runtime/nix/resolve.ts';
import { Podman } from '../runtime/podman/podman.ts';
import { listContainers, removeContainers } from '../runtime/podman/remove.ts';
import { isolationArgs } from '../runtime/podman/run.ts';
import { writeSeccompProfile } from '../runtime/podman/seccomp.ts';
import { loadConfig } from '../gateway/config.ts';

/** Label of the benchmark's own containers, so that a run removes those an interrupted run left. */
export const BENCH_LABEL = 'io.fnix.bench';

/** The host side of the baselines. */
export interface BenchHost {
  podman: Podman;
  rootfs: string;
  /** The busybox package's store path. */
  busybox: string;
  /** The gojq package's store path. */
  gojq: string;
  /** `podman run` options of (b) and (c): the same confinement as fnix's containers, store overlay included. */
  containerArgs: string[];
  /** fnix's seccomp profile, as fnix writes it. */
  seccompProfile: string;
  /** Resolves package lists in the set the gateway uses, as a function's build does (bench/closure.ts). */
  resolver: PackageResolver;
}

/** Builds the agent and rootfs under `stateDir` and resolves busybox and gojq in the configured package set. */
export async function prepareHost(stateDir: string): Promise<BenchHost> {
  await mkdir(stateDir, { recursive: true });
  const podman = await Podman.create({ cwd: stateDir });
  const rootfs = await prepareRootfs(join(stateDir, 'rootfs'), await buildAgent(join(stateDir, 'agent')));
  const resolver = new PackageResolver({
    packageSet: await choosePackageSet(process.env['FNIX_PACKAGES']),
    gcRootsDir: join(stateDir, 'gcroots'),
  });
  const busybox = (await resolver.resolve(['busybox'])).packages[0]!.storePath;
  const gojq = (await resolver.resolve(['gojq'])).packages[0]!.storePath;
  const seccompProfile = await writeSeccompProfile(join(stateDir, 'seccomp.json'));
  // Exactly the confinement of an fnix container (runtime/podman/run.ts), with fnix's default limits.
  const containerArgs = ['--label', `${BENCH_LABEL}=1`, ...isolationArgs({ uid: 65534, network: false, seccompProfile, ...loadConfig({}).limits })];
  return { podman, rootfs, busybox, gojq, containerArgs, seccompProfile, resolver };
}

/** Removes containers an earlier, interrupted benchmark left. */
export async function removeBenchContainers(podman: Podman): Promise<void> {
  await removeContainers(podman, await listContainers(podman, BENCH_LABEL, '1'));
}

/** Removes the containers of the fnix instance whose state folder is `stateDir`, if any are left. */
export async function removeInstanceContainers(podman: Podman, stateDir: string): Promise<void> {
  await removeContainers(podman, await listContainers(podman, INSTANCE_LABEL, instanceOf(stateDir)));
}

/** Starts a long-lived container for `podman exec`; returns its name. */
export async function startExecTarget(host: BenchHost): Promise<string> {
  const name = `fnix-bench-exec-${process.pid}`;
  await host.podman.exec(['run', '-d', '--name', name, ...host.containerArgs, '--rootfs', host.rootfs, `${host.busybox}/bin/sleep`, '3600']);
  return name;
}
