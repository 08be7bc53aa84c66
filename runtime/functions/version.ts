/**
 * @module
 * A built, immutable version of a function: what the pool specialises containers for.
 */
import type { Resolution } from '../nix/resolve.ts';
import type { Manifest } from './manifest.ts';

/** A function ready to serve. Everything in it is fixed once built. */
export interface FunctionVersion {
  name: string;
  /** A hash of the manifest, the files and the resolved store paths. */
  version: string;
  /** `name@version`: containers are reused only for the same key. */
  key: string;
  manifest: Manifest;
  /** The immutable copy of the function's files, linked into containers at /fn. */
  dir: string;
  /** The Nix packages, resolved and rooted. */
  resolution: Resolution;
  /** Variables the packages need besides PATH, such as PYTHONPATH (runtime/nix/environment.ts). */
  packageEnv: Record<string, string>;
  builtAt: Date;
}
