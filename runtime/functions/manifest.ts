/**
 * @module
 * function.json: its schema, its defaults and the errors that name the file, the field and the value.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { z } from 'zod';
import { ManifestError, type ManifestIssue } from '../errors.ts';

/** A Nix attribute path such as `gojq` or `python3Packages.requests`. */
export const ATTR_PATH_PATTERN = /^[A-Za-z_][A-Za-z0-9_'-]*(\.[A-Za-z_][A-Za-z0-9_'-]*)*$/;
const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Set by fnix for every invocation; a manifest may not override them. */
const RESERVED_ENV = new Set([
  'PATH',
  'HOME',
  'TMPDIR',
  'AUTH_TYPE',
  'CONTENT_LENGTH',
  'CONTENT_TYPE',
  'GATEWAY_INTERFACE',
  'PATH_INFO',
  'PATH_TRANSLATED',
  'QUERY_STRING',
  'REMOTE_ADDR',
  'REMOTE_HOST',
  'REMOTE_PORT',
  'REMOTE_USER',
  'REQUEST_METHOD',
  'REQUEST_URI',
  'SCRIPT_NAME',
  'SERVER_NAME',
  'SERVER_PORT',
  'SERVER_PROTOCOL',
  'SERVER_SOFTWARE',
]);
const MAX_MANIFEST_BYTES = 64 * 1024;

/** Defaults for the optional fields. */
export const MANIFEST_DEFAULTS = {
  timeoutMs: 30_000,
  memoryMb: 256,
  network: false,
  cgi: false,
  sessionTimeoutMs: 900_000,
  idleTimeoutMs: 300_000,
  access: 'public',
} as const;

const noNul = (s: string) => !s.includes('\0');

const commandSchema = z
  .array(z.string().max(4096).refine(noNul, 'must not contain NUL'))
  .min(1, 'must name a program: ["program", "arg", ...]')
  .max(256)
  .superRefine((argv, ctx) => {
    const program = argv[0];
    if (program === undefined) return;
    if (program === '') ctx.addIssue({ code: 'custom', path: [0], message: 'the program name is empty' });
    else if (program.includes('/') && !isInsideFunctionFolder(program)) {
      ctx.addIssue({
        code: 'custom',
        path: [0],
        message: 'must be a program on the packages\' PATH ("gojq") or a path inside the function folder ("./main.sh")',
      });
    }
  });

/** "./x" and "./dir/x", but not "./", "./../x", "./a/../../x" or "/abs": no segment may be empty or "..". */
function isInsideFunctionFolder(program: string): boolean {
  if (!program.startsWith('./')) return false;
  const segments = program.slice(2).split('/');
  return segments.every((segment) => segment !== '' && segment !== '..');
}

/** Defaults of a serve function's settings (docs/serve.md). */
export const SERVE_DEFAULTS = {
  readyPath: '/',
  concurrency: 1,
  minInstances: 1,
  maxInstances: 4,
  idleTimeoutMs: 300_000,
  startTimeoutMs: 10_000,
} as const;

/** `serve`: the command is a long-lived HTTP server on the container's loopback (docs/serve.md). */
const serveSchema = z
  .strictObject({
    /** The port it listens on, on 127.0.0.1 inside the container; given to it as PORT. */
    port: z.number().int().min(1).max(65_535),
    /** Polled with GET until it answers with a status below 500: the server is ready. */
    readyPath: z
      .string()
      .max(1024)
      .regex(/^\/[\x21-\x7e]*$/, 'must be a path starting with "/", printable ASCII without spaces')
      .default(SERVE_DEFAULTS.readyPath),
    /** Requests one instance takes at once. */
    concurrency: z.number().int().min(1).max(256).default(SERVE_DEFAULTS.concurrency),
    /** Instances kept running however idle (0: the first request after a quiet spell pays a start). */
    minInstances: z.number().int().min(0).max(64).default(SERVE_DEFAULTS.minInstances),
    /** Instances at most (within FNIX_MAX_CONTAINERS); requests queue beyond. */
    maxInstances: z.number().int().min(1).max(256).default(SERVE_DEFAULTS.maxInstances),
    /** An instance above minInstances idle this long is stopped. */
    idleTimeoutMs: z.number().int().min(1000).max(86_400_000).default(SERVE_DEFAULTS.idleTimeoutMs),
    /** How long the server has to become ready after its start. */
    startTimeoutMs: z.number().int().min(100).max(300_000).default(SERVE_DEFAULTS.startTimeoutMs),
  })
  .superRefine((serve, ctx) => {
    if (serve.minInstances > serve.maxInstances) {
      ctx.addIssue({ code: 'custom', path: ['minInstances'], message: `must not exceed maxInstances (${serve.maxInstances})` });
    }
  });

/** A secret's name: what `PUT /api/secrets/<NAME>` sets and `/run/secrets/<NAME>` holds. */
export const SECRET_NAME_PATTERN = /^[A-Z_][A-Z0-9_]{0,127}$/;

/**
 * One declared secret: its name alone (a file at /run/secrets/<NAME>), or with `env` it is also an
 * environment variable: `true` under its own name, a string under that name.
 */
const secretSchema = z.union([
  z.string().regex(SECRET_NAME_PATTERN, 'secret names are upper-case letters, digits and underscores, such as "STRIPE_KEY"'),
  z.strictObject({
    name: z.string().regex(SECRET_NAME_PATTERN, 'secret names are upper-case letters, digits and underscores, such as "STRIPE_KEY"'),
    env: z.union([z.boolean(), z.string().regex(ENV_NAME_PATTERN, 'environment names are letters, digits and underscores')]).default(false),
  }),
]);

/** A declared secret, normalised: the file is always there; `env` is the variable's name when asked for. */
export interface SecretUse {
  name: string;
  env: string | undefined;
}

/** The secrets a manifest declares, normalised (`"X"` and `{ "name": "X" }` alike). */
export function secretUses(manifest: Pick<Manifest, 'secrets'>): SecretUse[] {
  return manifest.secrets.map((entry) =>
    typeof entry === 'string' ? { name: entry, env: undefined } : { name: entry.name, env: entry.env === true ? entry.name : entry.env || undefined },
  );
}

/** A serve function's settings, every default filled in. */
export type ServeSettings = z.infer<typeof serveSchema>;

const manifestSchema = z.strictObject({
  packages: z.array(z.string().regex(ATTR_PATH_PATTERN, 'must be a Nix attribute path such as "gojq" or "python3Packages.requests"')).max(64).default([]),
  command: commandSchema,
  env: z
    .record(
      z.string().regex(ENV_NAME_PATTERN, 'environment names are letters, digits and underscores'),
      z
        .string()
        .max(32 * 1024)
        .refine(noNul, 'must not contain NUL'),
    )
    .superRefine((env, ctx) => {
      for (const name of Object.keys(env)) {
        if (RESERVED_ENV.has(name) || name.startsWith('HTTP_') || name.startsWith('FNIX_')) {
          ctx.addIssue({ code: 'custom', path: [name], message: `${name} is set by fnix and cannot be overridden` });
        }
      }
    })
    .default({}),
  timeoutMs: z.number().int().min(100).max(900_000).default(MANIFEST_DEFAULTS.timeoutMs),
  memoryMb: z.number().int().min(16).max(65_536).default(MANIFEST_DEFAULTS.memoryMb),
  network: z.boolean().default(MANIFEST_DEFAULTS.network),
  cgi: z.boolean().default(MANIFEST_DEFAULTS.cgi),
  /** How long a WebSocket session may last (timeoutMs is for HTTP invocations). */
  sessionTimeoutMs: z.number().int().min(1000).max(86_400_000).default(MANIFEST_DEFAULTS.sessionTimeoutMs),
  /** How long a session may pass with no traffic either way. */
  idleTimeoutMs: z.number().int().min(1000).max(86_400_000).default(MANIFEST_DEFAULTS.idleTimeoutMs),
  /** Present: the command is a long-lived HTTP server, started once per instance (docs/serve.md). */
  serve: serveSchema.optional(),
  /** The secrets it is given, at /run/secrets/<NAME> (docs/secrets.md); a push naming one not set is refused. */
  secrets: z.array(secretSchema).max(64).default([]),
  /** `key`: a request needs an invoke key (docs/keys.md); `public`, the default, needs none. */
  access: z.enum(['public', 'key']).default(MANIFEST_DEFAULTS.access),
});

/** What no schema field alone can say: combinations that cannot work. */
function checkCombinations(manifest: z.infer<typeof manifestSchema>): ManifestIssue[] {
  const issues: ManifestIssue[] = [];
  const seen = new Set<string>();
  for (const [index, use] of secretUses(manifest).entries()) {
    if (seen.has(use.name)) issues.push({ field: `secrets.${index}`, message: `${use.name} is declared twice`, value: use.name });
    seen.add(use.name);
    if (use.env && (use.env in manifest.env || RESERVED_ENV.has(use.env) || use.env.startsWith('FNIX_') || use.env.startsWith('HTTP_'))) {
      issues.push({ field: `secrets.${index}.env`, message: `${use.env} is set elsewhere (env, or by fnix)`, value: use.env });
    }
  }
  if (!manifest.serve) return issues;
  if (manifest.cgi)
    issues.push({ field: 'cgi', message: 'a serve function answers HTTP itself; cgi is for a command that writes a response on stdout', value: true });
  if ('PORT' in manifest.env) issues.push({ field: 'env.PORT', message: 'PORT is set by fnix to serve.port', value: manifest.env['PORT'] });
  return issues;
}

/** A validated manifest, every default filled in. */
export type Manifest = z.infer<typeof manifestSchema>;

/** Validates a parsed manifest; `file` is used in error messages. Throws {@link ManifestError}. */
export function parseManifest(input: unknown, file: string): Manifest {
  const result = manifestSchema.safeParse(input);
  if (result.success) {
    const issues = checkCombinations(result.data);
    if (issues.length === 0) return result.data;
    throw new ManifestError(file, issues);
  }
  throw new ManifestError(
    file,
    result.error.issues.flatMap((issue) => describeIssue(issue, input)),
  );
}

/** Reads and validates a function.json. Throws {@link ManifestError}. */
export async function loadManifest(file: string): Promise<Manifest> {
  let text: string;
  try {
    const bytes = await readBounded(file, MAX_MANIFEST_BYTES + 1);
    if (bytes.length > MAX_MANIFEST_BYTES) {
      throw new ManifestError(file, [{ field: '', message: `is ${bytes.length} bytes; the limit is ${MAX_MANIFEST_BYTES}` }]);
    }
    text = bytes.toString('utf8').replace(/^\uFEFF/, ''); // editors on Windows may add a BOM
  } catch (error) {
    if (error instanceof ManifestError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const message = code === 'ENOENT' ? 'is missing: every function folder needs a function.json' : `cannot be read (${code})`;
    throw new ManifestError(file, [{ field: '', message }]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ManifestError(file, [{ field: '', message: `is not valid JSON: ${(error as Error).message}` }]);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ManifestError(file, [{ field: '', message: 'must be a JSON object' }]);
  }
  return parseManifest(json, file);
}

/** Turns a zod issue into issues that name the field (dotted path) and the value found there. */
function describeIssue(issue: z.core.$ZodIssue, input: unknown): ManifestIssue[] {
  if (issue.code === 'unrecognized_keys') {
    // The fields of the object that has the stray key: serve's own, or the manifest's.
    const known = Object.keys(issue.path[0] === 'serve' ? serveSchema.shape : manifestSchema.shape);
    return issue.keys.map((key) => ({
      field: [...issue.path, key].join('.'),
      message: `unknown field (known fields: ${known.join(', ')})`,
      value: valueAt(input, [...issue.path, key]),
    }));
  }
  const field = issue.path.map(String).join('.');
  const value = valueAt(input, issue.path);
  let message = issue.code === 'invalid_type' && value === undefined ? 'is required' : issue.message;
  if (issue.code === 'invalid_key') message = issue.issues.map((inner) => inner.message).join('; ');
  return [value === undefined ? { field, message } : { field, message, value }];
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const key of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

/** Reads at most `limit` bytes of a regular file (never a FIFO or a device, which could block or not end). */
async function readBounded(file: string, limit: number): Promise<Buffer> {
  const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const info = await handle.stat();
    if (!info.isFile()) {
      throw Object.assign(new Error(`${file} is not a regular file`), { code: info.isDirectory() ? 'EISDIR' : 'not a regular file' });
    }
    const buffer = Buffer.alloc(limit);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, limit - length, null);
      length += bytesRead;
      if (bytesRead === 0 || length >= limit) break;
    }
    return buffer.subarray(0, length);
  } finally {
    await handle.close();
  }
}
