/**
 * @module
 * What one invocation is given of the secrets: each secret its function declares, as a file for the
 * agent to write at /run/secrets/<NAME> (runtime/agent/agent.c), and, where the manifest asks, as an
 * environment variable. Read from the store at each invocation, so that a rotation needs no push.
 * Nothing else: a function never gets a secret it did not declare.
 */
import { isUtf8 } from 'node:buffer';
import { FnixError } from '../errors.ts';
import { secretUses } from '../functions/manifest.ts';
import type { FunctionVersion } from '../functions/version.ts';
import type { SecretValues } from './store.ts';

/** Where the secrets' tmpfs is mounted in every container (runtime/podman/run.ts). */
export const SECRETS_DIR = '/run/secrets';
/** The most bytes of secrets (files and variables together) one invocation may be given: they travel in one SPAWN frame. */
export const MAX_DELIVERED_BYTES = 768 * 1024;

/** One file for the agent to write in {@link SECRETS_DIR}. */
export interface SecretFile {
  name: string;
  data: Buffer;
}

/** What an invocation of a function gets. */
export interface SecretDelivery {
  files: SecretFile[];
  env: Record<string, string>;
}

/** Delivered when a function declares none. */
const NOTHING: SecretDelivery = Object.freeze({ files: [], env: Object.freeze({}) }) as SecretDelivery;

/**
 * The secrets `fn` declares, read now. Throws SECRET_MISSING naming the first that is not set and the
 * fix, or SECRET_INVALID when a value cannot be an environment variable (it holds a NUL byte, or is
 * not valid UTF-8) or the values are too large to deliver; the values read so far are zeroed then.
 */
export function deliverSecrets(fn: FunctionVersion, values: SecretValues | undefined): SecretDelivery {
  const uses = secretUses(fn.manifest);
  if (uses.length === 0) return NOTHING;
  const delivery: SecretDelivery = { files: [], env: {} };
  try {
    return deliverInto(fn, values, delivery);
  } catch (error) {
    for (const file of delivery.files) file.data.fill(0);
    throw error;
  }
}

function deliverInto(fn: FunctionVersion, values: SecretValues | undefined, delivery: SecretDelivery): SecretDelivery {
  let bytes = 0;
  for (const use of secretUses(fn.manifest)) {
    const data = values?.value(use.name);
    if (!data) {
      throw new FnixError(
        'SECRET_MISSING',
        `function '${fn.name}' declares the secret ${use.name}, which is not set: set it with \`fnix secret set ${use.name}\` (PUT /api/secrets/${use.name})`,
        { details: { function: fn.name, secret: use.name } },
      );
    }
    delivery.files.push({ name: use.name, data });
    bytes += data.length;
    if (use.env) {
      if (data.includes(0)) {
        throw new FnixError(
          'SECRET_INVALID',
          `function '${fn.name}' asks for the secret ${use.name} as the variable ${use.env}, but its value holds a NUL byte, which no environment variable can: read /run/secrets/${use.name} instead`,
          { details: { function: fn.name, secret: use.name } },
        );
      }
      // A variable is text: bytes that are not UTF-8 would be changed (to U+FFFD) on the way, silently.
      if (!isUtf8(data)) {
        throw new FnixError(
          'SECRET_INVALID',
          `function '${fn.name}' asks for the secret ${use.name} as the variable ${use.env}, but its value is not valid UTF-8, which a variable must be: read /run/secrets/${use.name} instead (a file holds any bytes), or set a UTF-8 value`,
          { details: { function: fn.name, secret: use.name } },
        );
      }
      delivery.env[use.env] = data.toString('utf8');
      bytes += data.length;
    }
  }
  if (bytes > MAX_DELIVERED_BYTES) {
    throw new FnixError(
      'SECRET_INVALID',
      `the secrets function '${fn.name}' declares come to ${bytes} bytes (counting those also given as variables twice), above the ${MAX_DELIVERED_BYTES} an invocation can be given`,
      { details: { function: fn.name } },
    );
  }
  return delivery;
}

/** The names of `versions` whose manifest declares `secret`. */
export function functionsDeclaring(versions: readonly FunctionVersion[], secret: string): string[] {
  return versions.filter((fn) => secretUses(fn.manifest).some((use) => use.name === secret)).map((fn) => fn.name);
}
