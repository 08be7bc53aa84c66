/**
 * @module
 * function.json validation: parseManifest (schema, defaults, the rules for command, env and packages,
 * and issues that name the field and the value) and loadManifest (reading real files: missing,
 * unreadable, not JSON, not an object, too large).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FnixError, ManifestError } from '../../../runtime/errors.ts';
import { ATTR_PATH_PATTERN, MANIFEST_DEFAULTS, loadManifest, parseManifest, secretUses } from '../../../runtime/functions/manifest.ts';
import { rejectionOf, thrownBy } from '../../helpers/errors.ts';

const FILE = '/srv/functions/demo/function.json';

/** The ManifestError that parseManifest throws for `input`. */
function manifestErrorOf(input: unknown, file = FILE): ManifestError {
  return thrownBy(() => parseManifest(input, file), ManifestError);
}

/** The ManifestError that loadManifest rejects with. */
function loadErrorOf(file: string): Promise<ManifestError> {
  return rejectionOf(loadManifest(file), ManifestError);
}

/** The fields named by the issues of the error for `input`. */
function fieldsOf(input: unknown): string[] {
  return manifestErrorOf(input).issues.map((issue) => issue.field);
}

describe('parseManifest: defaults', () => {
  it('fills every optional field from a manifest holding only command', () => {
    expect(parseManifest({ command: ['gojq'] }, FILE)).toEqual({
      command: ['gojq'],
      packages: [],
      env: {},
      timeoutMs: 30_000,
      memoryMb: 256,
      network: false,
      cgi: false,
      sessionTimeoutMs: 900_000,
      idleTimeoutMs: 300_000,
      secrets: [],
      access: 'public',
    });
  });

  it('exports the same defaults it applies', () => {
    expect(MANIFEST_DEFAULTS).toEqual({
      timeoutMs: 30_000,
      memoryMb: 256,
      network: false,
      cgi: false,
      sessionTimeoutMs: 900_000,
      idleTimeoutMs: 300_000,
      access: 'public',
    });
  });

  it('keeps every value given instead of the default', () => {
    const input = {
      command: ['./main.sh', '--flag', ''],
      packages: ['jq', 'python3Packages.requests'],
      env: { GREETING: 'hello', _under: '' },
      timeoutMs: 100,
      memoryMb: 65_536,
      network: true,
      cgi: true,
      sessionTimeoutMs: 1000,
      idleTimeoutMs: 86_400_000,
      secrets: ['STRIPE_KEY', { name: 'DB_URL', env: true }, { name: 'TOKEN', env: 'API_TOKEN' }],
      access: 'key',
    };
    expect(parseManifest(input, FILE)).toEqual(input);
  });

  it('does not share default arrays or objects between parsed manifests', () => {
    const first = parseManifest({ command: ['x'] }, FILE);
    first.packages.push('mutated');
    first.env['MUTATED'] = '1';
    const second = parseManifest({ command: ['x'] }, FILE);
    expect(second.packages).toEqual([]);
    expect(second.env).toEqual({});
  });
});

describe('parseManifest: the error', () => {
  it('is a FnixError with code MANIFEST_INVALID whose details carry the file and the issues', () => {
    const error = manifestErrorOf({ command: ['x'], memoryMb: 15 });
    expect(error).toBeInstanceOf(FnixError);
    expect(error.code).toBe('MANIFEST_INVALID');
    expect(error.file).toBe(FILE);
    expect(error.details).toEqual({ file: FILE, issues: error.issues });
  });

  it('names the file, the field and the value in its message', () => {
    const error = manifestErrorOf({ command: ['x'], timeoutMs: 900_001 });
    expect(error.message).toContain(FILE);
    expect(error.message).toContain('timeoutMs');
    expect(error.message).toContain('900001');
  });

  it('reports every problem at once, not just the first', () => {
    const error = manifestErrorOf({ command: ['x'], timeoutMs: '5', memoryMb: 15, network: 'yes' });
    expect(error.issues.map((issue) => [issue.field, issue.value])).toEqual([
      ['timeoutMs', '5'],
      ['memoryMb', 15],
      ['network', 'yes'],
    ]);
  });

  it('refuses input that is not an object, with the value and an empty field', () => {
    for (const input of [null, [], 'str', 42]) {
      const [issue, ...more] = manifestErrorOf(input).issues;
      expect(more).toEqual([]);
      expect(issue).toMatchObject({ field: '', value: input });
    }
  });
});

describe('parseManifest: unknown fields', () => {
  it('names each unknown field with its value and lists the known fields', () => {
    const error = manifestErrorOf({ command: ['x'], timeout: 5, Memory: { mb: 1 } });
    expect(error.issues).toHaveLength(2);
    expect(error.issues).toContainEqual(expect.objectContaining({ field: 'timeout', value: 5 }));
    expect(error.issues).toContainEqual(expect.objectContaining({ field: 'Memory', value: { mb: 1 } }));
    for (const issue of error.issues) {
      for (const known of ['packages', 'command', 'env', 'timeoutMs', 'memoryMb', 'network', 'cgi', 'sessionTimeoutMs', 'idleTimeoutMs']) {
        expect(issue.message).toContain(known);
      }
    }
    expect(error.message).toContain("'timeout'");
    expect(error.message).toContain("'Memory'");
  });
});

describe('parseManifest: types', () => {
  it.each([
    ['command', 'gojq'],
    ['command', [1]],
    ['packages', 'jq'],
    ['packages', [1]],
    ['env', ['A=1']],
    ['env', { A: 1 }],
    ['timeoutMs', '1000'],
    ['timeoutMs', 1000.5],
    ['memoryMb', null],
    ['memoryMb', 128.5],
    ['network', 1],
    ['cgi', 'true'],
  ])('refuses %s = %j', (field, value) => {
    const error = manifestErrorOf({ command: ['x'], [field]: value });
    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]!.field.split('.')[0]).toBe(field);
  });

  it('says "is required" and gives no value when command is missing', () => {
    const error = manifestErrorOf({ packages: ['jq'] });
    expect(error.issues).toEqual([{ field: 'command', message: 'is required' }]);
    expect('value' in error.issues[0]!).toBe(false);
  });
});

describe('parseManifest: ranges', () => {
  it.each([
    ['timeoutMs', 100],
    ['timeoutMs', 900_000],
    ['memoryMb', 16],
    ['memoryMb', 65_536],
  ])('accepts %s = %d (a bound)', (field, value) => {
    expect(parseManifest({ command: ['x'], [field]: value }, FILE)[field as 'timeoutMs' | 'memoryMb']).toBe(value);
  });

  it.each([
    ['timeoutMs', 0],
    ['timeoutMs', 99],
    ['timeoutMs', 900_001],
    ['timeoutMs', -1],
    ['memoryMb', 15],
    ['memoryMb', 65_537],
  ])('refuses %s = %d', (field, value) => {
    expect(manifestErrorOf({ command: ['x'], [field]: value }).issues).toEqual([expect.objectContaining({ field, value })]);
  });

  it('bounds command to 256 entries of 4096 characters', () => {
    expect(parseManifest({ command: ['x', ...Array(255).fill('a')] }, FILE).command).toHaveLength(256);
    expect(fieldsOf({ command: ['x', ...Array(256).fill('a')] })).toEqual(['command']);
    expect(parseManifest({ command: ['x', 'a'.repeat(4096)] }, FILE).command[1]).toHaveLength(4096);
    expect(fieldsOf({ command: ['x', 'a'.repeat(4097)] })).toEqual(['command.1']);
  });

  it('bounds packages to 64 entries', () => {
    const names = Array.from({ length: 65 }, (_, i) => `p${i}`);
    expect(parseManifest({ command: ['x'], packages: names.slice(0, 64) }, FILE).packages).toHaveLength(64);
    expect(fieldsOf({ command: ['x'], packages: names })).toEqual(['packages']);
  });

  it('bounds env values to 32 KiB', () => {
    expect(parseManifest({ command: ['x'], env: { A: 'v'.repeat(32 * 1024) } }, FILE).env['A']).toHaveLength(32 * 1024);
    expect(fieldsOf({ command: ['x'], env: { A: 'v'.repeat(32 * 1024 + 1) } })).toEqual(['env.A']);
  });
});

describe('parseManifest: command', () => {
  it('refuses an empty command with the value []', () => {
    expect(manifestErrorOf({ command: [] }).issues).toEqual([expect.objectContaining({ field: 'command', value: [] })]);
  });

  it('refuses an empty program name but allows empty arguments', () => {
    expect(manifestErrorOf({ command: [''] }).issues).toEqual([expect.objectContaining({ field: 'command.0', value: '' })]);
    expect(parseManifest({ command: ['x', ''] }, FILE).command).toEqual(['x', '']);
  });

  it.each(['gojq', 'python3', 'my-tool_2', './main.sh', './a/b', './bin/run', './..x', './x..'])('accepts program %j', (program) => {
    expect(parseManifest({ command: [program, 'arg'] }, FILE).command[0]).toBe(program);
  });

  it.each(['/abs', '/bin/sh', '../x', 'a/b', '~/x', './', './a/../../x', './a/..', './a/./../..'])(
    'refuses program %j, naming command.0 and the value',
    (program) => {
      expect(manifestErrorOf({ command: [program] }).issues).toEqual([expect.objectContaining({ field: 'command.0', value: program })]);
    },
  );

  // "./.." and "./../x" leave the function folder just like "./a/../../x" does.
  it.each(['./..', './../x', './../other-function/main.sh'])('refuses program %j, which leaves the function folder', (program) => {
    expect(manifestErrorOf({ command: [program] }).issues).toEqual([expect.objectContaining({ field: 'command.0', value: program })]);
  });

  it('only checks the program for a path: arguments may hold any path', () => {
    expect(parseManifest({ command: ['cat', '/etc/passwd', '../x', 'a/b'] }, FILE).command).toHaveLength(4);
  });

  it('refuses NUL in the program and in an argument, naming the index', () => {
    expect(manifestErrorOf({ command: ['x\0y'] }).issues).toEqual([expect.objectContaining({ field: 'command.0', value: 'x\0y' })]);
    expect(manifestErrorOf({ command: ['x', 'ok', 'a\0'] }).issues).toEqual([expect.objectContaining({ field: 'command.2', value: 'a\0' })]);
  });
});

describe('parseManifest: env', () => {
  it('accepts letters, digits and underscores, not starting with a digit', () => {
    const env = { A: '1', a_b: '2', _X9: '3', lower: '4' };
    expect(parseManifest({ command: ['x'], env }, FILE).env).toEqual(env);
  });

  it.each(['1BAD', 'a-b', 'A.B', 'A B', 'A=B', 'É', ''])('refuses the name %j, naming env.<name>', (name) => {
    const error = manifestErrorOf({ command: ['x'], env: { [name]: 'v' } });
    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]!.field).toBe(`env.${name}`);
  });

  it.each(['PATH', 'HOME', 'TMPDIR', 'QUERY_STRING', 'REQUEST_METHOD', 'CONTENT_TYPE', 'HTTP_X', 'HTTP_AUTHORIZATION', 'FNIX_X', 'FNIX_'])(
    'refuses the reserved name %s with its value',
    (name) => {
      const error = manifestErrorOf({ command: ['x'], env: { [name]: 'mine' } });
      expect(error.issues).toEqual([expect.objectContaining({ field: `env.${name}`, value: 'mine' })]);
      expect(error.issues[0]!.message).toContain(name);
    },
  );

  it('reports each reserved name separately', () => {
    expect(fieldsOf({ command: ['x'], env: { PATH: '/x', OK: '1', HTTP_X: 'y' } })).toEqual(['env.PATH', 'env.HTTP_X']);
  });

  it('treats the reserved names as case-sensitive: lower-case path and http_x are allowed', () => {
    expect(parseManifest({ command: ['x'], env: { path: '/x', http_x: 'y', Home: 'h' } }, FILE).env).toEqual({
      path: '/x',
      http_x: 'y',
      Home: 'h',
    });
  });

  it('refuses NUL in a value', () => {
    expect(manifestErrorOf({ command: ['x'], env: { A: 'a\0b' } }).issues).toEqual([expect.objectContaining({ field: 'env.A', value: 'a\0b' })]);
  });
});

describe('parseManifest: packages', () => {
  it.each(['gojq', 'python3Packages.requests', 'haskellPackages.pandoc-types', "a'b", '_private', 'a.b.c', 'gcc13'])('accepts %j', (name) => {
    expect(ATTR_PATH_PATTERN.test(name)).toBe(true);
    expect(parseManifest({ command: ['x'], packages: [name] }, FILE).packages).toEqual([name]);
  });

  // biome-ignore lint/suspicious/noTemplateCurlyInString: a Nix interpolation, written as a name on purpose
  it.each(['foo bar', 'a..b', '${x}', '', '.a', 'a.', '1abc', 'a/b', 'pkgs."x"', 'a\0b', 'import ./x'])('refuses %j', (name) => {
    expect(manifestErrorOf({ command: ['x'], packages: ['ok', name] }).issues).toEqual([expect.objectContaining({ field: 'packages.1', value: name })]);
  });
});

describe('loadManifest', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fnix-manifest-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function write(name: string, content: string | Buffer): Promise<string> {
    const file = path.join(dir, name);
    await writeFile(file, content);
    return file;
  }

  it('reads, parses and fills defaults', async () => {
    const file = await write('ok.json', JSON.stringify({ command: ['./main.sh'], cgi: true }));
    expect(await loadManifest(file)).toEqual({
      command: ['./main.sh'],
      packages: [],
      env: {},
      timeoutMs: 30_000,
      memoryMb: 256,
      network: false,
      cgi: true,
      sessionTimeoutMs: 900_000,
      idleTimeoutMs: 300_000,
      secrets: [],
      access: 'public',
    });
  });

  it('names a missing file', async () => {
    const file = path.join(dir, 'absent', 'function.json');
    const error = await loadErrorOf(file);
    expect(error.code).toBe('MANIFEST_INVALID');
    expect(error.file).toBe(file);
    expect(error.message).toContain(file);
    expect(error.issues).toEqual([{ field: '', message: expect.stringContaining('missing') }]);
  });

  it('reports a file that cannot be read with its errno code', async () => {
    const folder = path.join(dir, 'is-a-dir.json');
    await mkdir(folder);
    const error = await loadErrorOf(folder);
    expect(error.file).toBe(folder);
    expect(error.issues).toEqual([{ field: '', message: expect.stringContaining('EISDIR') }]);
  });

  it('refuses invalid JSON, naming the file', async () => {
    const file = await write('bad.json', '{"command": ["x"],}');
    const error = await loadErrorOf(file);
    expect(error.file).toBe(file);
    expect(error.message).toContain(file);
    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]).toMatchObject({ field: '' });
    expect(error.issues[0]!.message).toContain('JSON');
  });

  it('refuses an empty file', async () => {
    const error = await loadErrorOf(await write('empty.json', ''));
    expect(error.issues).toEqual([{ field: '', message: expect.stringContaining('JSON') }]);
  });

  it.each([
    ['an array', '[{"command": ["x"]}]'],
    ['a string', '"command"'],
    ['a number', '42'],
    ['null', 'null'],
  ])('refuses JSON that is %s', async (_what, text) => {
    const file = await write(`non-object-${_what.replace(/\W/g, '')}.json`, text);
    const error = await loadErrorOf(file);
    expect(error.file).toBe(file);
    expect(error.message).toContain(file);
    expect(error.issues).toEqual([{ field: '', message: expect.stringContaining('object') }]);
  });

  it('passes the file path into schema errors', async () => {
    const file = await write('schema.json', JSON.stringify({ command: ['/bin/sh'] }));
    const error = await loadErrorOf(file);
    expect(error.file).toBe(file);
    expect(error.details['file']).toBe(file);
    expect(error.message).toContain(file);
    expect(error.message).toContain('command.0');
    expect(error.message).toContain('/bin/sh');
    expect(error.issues).toEqual([expect.objectContaining({ field: 'command.0', value: '/bin/sh' })]);
  });

  it('accepts a file of exactly 64 KiB and refuses one byte more', async () => {
    const base = JSON.stringify({ command: ['x'] });
    const exact = await write('exact.json', base + ' '.repeat(64 * 1024 - base.length));
    expect((await loadManifest(exact)).command).toEqual(['x']);

    const over = await write('over.json', base + ' '.repeat(64 * 1024 + 1 - base.length));
    const error = await loadErrorOf(over);
    expect(error.file).toBe(over);
    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]).toMatchObject({ field: '' });
    expect(error.issues[0]!.message).toContain(String(64 * 1024 + 1));
    expect(error.issues[0]!.message).toContain(String(64 * 1024));
  });

  it('measures the limit in bytes, not characters', async () => {
    // 30,000 three-byte characters: under 64 Ki characters, over 64 KiB.
    const file = await write('wide.json', JSON.stringify({ command: ['x'], env: { A: '€'.repeat(30_000) } }));
    const error = await loadErrorOf(file);
    expect(error.issues).toEqual([{ field: '', message: expect.stringContaining('limit') }]);
  });
});

describe('parseManifest: secrets and access', () => {
  it('normalises declared secrets: a name alone is a file; env true or a name adds a variable', () => {
    const manifest = parseManifest({ command: ['x'], secrets: ['A_KEY', { name: 'B' }, { name: 'C', env: true }, { name: 'D', env: 'D_VAR' }] }, FILE);
    expect(secretUses(manifest)).toEqual([
      { name: 'A_KEY', env: undefined },
      { name: 'B', env: undefined },
      { name: 'C', env: 'C' },
      { name: 'D', env: 'D_VAR' },
    ]);
  });

  it('refuses a lower-case or odd secret name, a secret declared twice, and a variable that env or fnix sets', () => {
    expect(manifestErrorOf({ command: ['x'], secrets: ['stripe'] }).issues[0]!.field).toBe('secrets.0');
    expect(manifestErrorOf({ command: ['x'], secrets: ['../X'] }).issues[0]!.field).toBe('secrets.0');
    expect(manifestErrorOf({ command: ['x'], secrets: ['A', 'A'] }).issues).toEqual([{ field: 'secrets.1', message: 'A is declared twice', value: 'A' }]);
    expect(manifestErrorOf({ command: ['x'], env: { A: '1' }, secrets: [{ name: 'A', env: true }] }).issues[0]!.field).toBe('secrets.0.env');
    expect(manifestErrorOf({ command: ['x'], secrets: [{ name: 'P', env: 'PATH' }] }).issues[0]!.field).toBe('secrets.0.env');
  });

  it('takes access public or key, and nothing else', () => {
    expect(parseManifest({ command: ['x'], access: 'key' }, FILE).access).toBe('key');
    expect(manifestErrorOf({ command: ['x'], access: 'private' }).issues[0]!.field).toBe('access');
  });
});
