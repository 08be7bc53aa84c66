/**
 * @module
 * What Podman reports about the host, read once at start and shown by /healthz.
 */
import type { Podman } from './podman.ts';

/** The facts fnix relies on. */
export interface PodmanInfo {
  version: string;
  ociRuntime: string;
  cgroupManager: string;
  cgroupVersion: string;
}

/** Asks `podman info`; throws (execa's error) when podman does not work. */
export async function readPodmanInfo(podman: Podman): Promise<PodmanInfo> {
  const { stdout } = await podman.exec(['info', '--format', 'json']);
  const info = JSON.parse(String(stdout)) as {
    host: { ociRuntime: { name: string }; cgroupManager: string; cgroupVersion: string };
    version: { Version: string };
  };
  return {
    version: info.version.Version,
    ociRuntime: info.host.ociRuntime.name,
    cgroupManager: info.host.cgroupManager,
    cgroupVersion: info.host.cgroupVersion,
  };
}
