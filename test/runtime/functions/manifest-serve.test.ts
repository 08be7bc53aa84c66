/**
 * @module
 * function.json's `serve` (runtime/functions/manifest.ts): its defaults, the bounds of each field with
 * issues that name it, and the combinations refused (serve with cgi, env.PORT with serve).
 */
import { describe, expect, it } from 'vitest';
import { ManifestError } from '../../../runtime/errors.ts';
import { MANIFEST_DEFAULTS, SERVE_DEFAULTS, parseManifest } from '../../../runtime/functions/manifest.ts';
import { thrownBy } from '../../helpers/errors.ts';

const FILE = '/srv/functions/web/function.json';

/** A serve manifest with `serve` (and the rest of the manifest) as given. */
function manifest(serve: unknown, rest: Record<string, unknown> = {}): Record<string, unknown> {
  return { packages: ['python3'], command: ['python3', './server.py'], serve, ...rest };
}

/** The issues parseManifest throws for `input`. */
function issuesOf(input: unknown) {
  return thrownBy(() => parseManifest(input, FILE), ManifestError).issues;
}

describe('serve: defaults', () => {
  it('fills every serve default from a serve holding only port', () => {
    expect(parseManifest(manifest({ port: 8080 }), FILE).serve).toEqual({
      port: 8080,
      readyPath: '/',
      concurrency: 1,
      minInstances: 1,
      maxInstances: 4,
      idleTimeoutMs: 300_000,
      startTimeoutMs: 10_000,
    });
  });

  it('exports the defaults it applies', () => {
    expect(SERVE_DEFAULTS).toEqual({ readyPath: '/', concurrency: 1, minInstances: 1, maxInstances: 4, idleTimeoutMs: 300_000, startTimeoutMs: 10_000 });
  });

  it('keeps every value given', () => {
    const serve = { port: 3000, readyPath: '/healthz?deep=1', concurrency: 8, minInstances: 0, maxInstances: 16, idleTimeoutMs: 1000, startTimeoutMs: 100 };
    expect(parseManifest(manifest(serve), FILE).serve).toEqual(serve);
  });

  it('accepts minInstances equal to maxInstances, and the bounds of port', () => {
    expect(parseManifest(manifest({ port: 1, minInstances: 3, maxInstances: 3 }), FILE).serve).toMatchObject({ port: 1, minInstances: 3 });
    expect(parseManifest(manifest({ port: 65_535 }), FILE).serve?.port).toBe(65_535);
  });

  it('leaves serve out of a manifest without it, with the other defaults as before', () => {
    const parsed = parseManifest({ command: ['gojq'] }, FILE);
    expect(parsed.serve).toBeUndefined();
    expect('serve' in parsed).toBe(false);
    expect(parsed.timeoutMs).toBe(MANIFEST_DEFAULTS.timeoutMs);
  });
});

describe('serve: fields refused, by name', () => {
  it.each([
    ['port', { port: 0 }],
    ['port', { port: 65_536 }],
    ['port', { port: 80.5 }],
    ['port', { port: '8080' }],
    ['readyPath', { port: 80, readyPath: 'healthz' }],
    ['readyPath', { port: 80, readyPath: '/with space' }],
    ['readyPath', { port: 80, readyPath: '/tab\there' }],
    ['readyPath', { port: 80, readyPath: '/caf\u00e9' }],
    ['readyPath', { port: 80, readyPath: '' }],
    ['readyPath', { port: 80, readyPath: `/${'a'.repeat(1024)}` }],
    ['concurrency', { port: 80, concurrency: 0 }],
    ['concurrency', { port: 80, concurrency: 257 }],
    ['concurrency', { port: 80, concurrency: 1.5 }],
    ['minInstances', { port: 80, minInstances: -1 }],
    ['maxInstances', { port: 80, minInstances: 0, maxInstances: 0 }],
    ['idleTimeoutMs', { port: 80, idleTimeoutMs: 999 }],
    ['startTimeoutMs', { port: 80, startTimeoutMs: 99 }],
    ['startTimeoutMs', { port: 80, startTimeoutMs: 300_001 }],
  ])('refuses serve.%s in %j', (field, serve) => {
    const issues = issuesOf(manifest(serve));
    expect(issues.map((issue) => issue.field)).toEqual([`serve.${field}`]);
    expect(issues[0]!.value).toEqual((serve as Record<string, unknown>)[field]);
  });

  it('requires port', () => {
    expect(issuesOf(manifest({ readyPath: '/' }))).toEqual([{ field: 'serve.port', message: 'is required' }]);
  });

  it('refuses minInstances above maxInstances, naming minInstances and the bound', () => {
    const issues = issuesOf(manifest({ port: 80, minInstances: 5, maxInstances: 2 }));
    expect(issues).toEqual([{ field: 'serve.minInstances', message: 'must not exceed maxInstances (2)', value: 5 }]);
  });

  it('refuses minInstances above the default maxInstances when maxInstances is not given', () => {
    const issues = issuesOf(manifest({ port: 80, minInstances: 5 }));
    expect(issues).toEqual([{ field: 'serve.minInstances', message: `must not exceed maxInstances (${SERVE_DEFAULTS.maxInstances})`, value: 5 }]);
  });

  it('refuses an unknown serve field, naming it', () => {
    const issues = issuesOf(manifest({ port: 80, readyPth: '/healthz' }));
    expect(issues).toMatchObject([{ field: 'serve.readyPth', value: '/healthz', message: expect.stringMatching(/^unknown field/) }]);
  });

  // Skipped: the message lists the manifest's top-level fields ("packages, command, env, ...") rather
  // than serve's own. Unskip once describeIssue takes the known fields from the object with the stray key.
  it("lists serve's own fields as the known ones", () => {
    const [issue] = issuesOf(manifest({ port: 80, readyPth: '/healthz' }));
    expect(issue!.message).toBe(`unknown field (known fields: port, ${Object.keys(SERVE_DEFAULTS).join(', ')})`);
  });

  it.each([[true], [8080], [null], [[8080]], ['yes']])('refuses serve that is not an object: %j', (serve) => {
    expect(issuesOf(manifest(serve)).map((issue) => issue.field)).toEqual(['serve']);
  });

  it('names the file and every field in the message', () => {
    const error = thrownBy(() => parseManifest(manifest({ port: 0, concurrency: 0 }), FILE), ManifestError);
    expect(error.code).toBe('MANIFEST_INVALID');
    expect(error.message).toContain(FILE);
    expect(error.message).toContain("field 'serve.port' (value 0)");
    expect(error.message).toContain("field 'serve.concurrency' (value 0)");
  });
});

describe('serve: combinations refused', () => {
  it('refuses serve with cgi', () => {
    expect(issuesOf(manifest({ port: 80 }, { cgi: true }))).toEqual([
      { field: 'cgi', message: expect.stringContaining('a serve function answers HTTP itself'), value: true },
    ]);
  });

  it('allows cgi: false with serve', () => {
    expect(parseManifest(manifest({ port: 80 }, { cgi: false }), FILE).cgi).toBe(false);
  });

  it('refuses env.PORT with serve, with its value', () => {
    expect(issuesOf(manifest({ port: 80 }, { env: { PORT: '9000', OTHER: 'x' } }))).toEqual([
      { field: 'env.PORT', message: 'PORT is set by fnix to serve.port', value: '9000' },
    ]);
  });

  it('reports both when both are wrong', () => {
    expect(issuesOf(manifest({ port: 80 }, { cgi: true, env: { PORT: '1' } })).map((issue) => issue.field)).toEqual(['cgi', 'env.PORT']);
  });

  it('allows env.PORT without serve (a plain function may use it as it likes)', () => {
    expect(parseManifest({ command: ['gojq'], env: { PORT: '9000' } }, FILE).env).toEqual({ PORT: '9000' });
  });

  it('refuses FNIX_INSTANCE_ID in env as every FNIX_ name', () => {
    expect(issuesOf(manifest({ port: 80 }, { env: { FNIX_INSTANCE_ID: 'x' } })).map((issue) => issue.field)).toEqual(['env.FNIX_INSTANCE_ID']);
  });
});
