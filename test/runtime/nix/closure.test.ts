/**
 * @module
 * Measuring closures: the parsing of `nix-store --query --size`'s output and the wording of sizes, then
 * StorePathSizes against real Nix (sizes checked against the NAR that `nix-store --dump` writes), its
 * cache, its shared queries and its errors.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FnixError } from '../../../runtime/errors.ts';
import { describeClosure, formatBytes, parseSizes, StorePathSizes } from '../../../runtime/nix/closure.ts';
import { choosePackageSet } from '../../../runtime/nix/package-set.ts';
import { PackageResolver, type Resolution } from '../../../runtime/nix/resolve.ts';
import { rejectionOf, thrownBy } from '../../helpers/errors.ts';

const EXTRA_SET = fileURLToPath(new URL('./fixtures/extra-set', import.meta.url));
const A = '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a';
const B = '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b';

describe('parseSizes', () => {
  it('reads one size per line, in the order of the paths', () => {
    expect(parseSizes('2034368\n3843352\n', [A, B])).toEqual(
      new Map([
        [A, 2034368],
        [B, 3843352],
      ]),
    );
    expect(parseSizes('0\n', [A])).toEqual(new Map([[A, 0]]));
    expect(parseSizes('', [])).toEqual(new Map());
  });

  it('takes a repeated path once (Nix prints it again)', () => {
    expect(parseSizes('12\n34\n12\n', [A, B, A])).toEqual(
      new Map([
        [A, 12],
        [B, 34],
      ]),
    );
  });

  it.each([
    ['too few lines', '12\n', [A, B]],
    ['too many lines', '12\n34\n56\n', [A, B]],
    ['a line that is no number', '12\nwarning: something\n', [A, B]],
    ['a negative number', '-1\n', [A]],
    ['a fraction', '1.5\n', [A]],
    ['an empty line', '\n12\n', [A, B]],
  ])('refuses %s', (_what, stdout, paths) => {
    thrownBy(() => parseSizes(stdout, paths), Error);
  });
});

describe('formatBytes and describeClosure', () => {
  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1024, '1.0 KiB'],
    [1536, '1.5 KiB'],
    [2034368, '1.9 MiB'],
    [2.4 * 2 ** 20, '2.4 MiB'],
    [3 * 2 ** 30, '3.0 GiB'],
  ])('%d bytes are %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });

  it('says how many paths, and their size', () => {
    expect(describeClosure({ count: 1, totalBytes: 2034368 })).toBe('1 path, 1.9 MiB');
    expect(describeClosure({ count: 3, totalBytes: 2.4 * 2 ** 20 })).toBe('3 paths, 2.4 MiB');
    expect(describeClosure({ count: 0, totalBytes: 0 })).toBe('0 paths, 0 B');
  });

  it('refuses options that are not positive integers, naming them', () => {
    expect(thrownBy(() => new StorePathSizes({ batchSize: 0 }), TypeError).message).toContain('batchSize');
    expect(thrownBy(() => new StorePathSizes({ cacheMax: 1.5 }), TypeError).message).toContain('cacheMax');
  });
});

describe('StorePathSizes against real Nix', () => {
  let tmp: string;
  let tools: Resolution; // busybox, bash, gojq
  let multi: Resolution; // its bin output refers to bash: a closure of two paths

  /** The length of the path's NAR, which is what Nix calls its size. */
  const narLength = async (storePath: string) => (await execa('nix-store', ['--dump', storePath], { encoding: 'buffer' })).stdout.length;

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'fnix-closure-'));
    const resolver = new PackageResolver({ packageSet: await choosePackageSet(EXTRA_SET), gcRootsDir: path.join(tmp, 'roots') });
    tools = await resolver.resolve(['busybox', 'bash', 'gojq']);
    multi = await resolver.resolve(['multi']);
  }, 120_000);
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it("measures each path of a closure as its NAR's length, and adds them up", async () => {
    const sizes = new StorePathSizes();
    const measured = await sizes.measure(multi.closure);
    expect(measured.paths.map((p) => p.path)).toEqual(multi.closure);
    expect(measured.count).toBe(2);
    for (const { path: storePath, bytes } of measured.paths) expect(bytes).toBe(await narLength(storePath));
    expect(measured.totalBytes).toBe(measured.paths.reduce((sum, p) => sum + p.bytes, 0));
    expect(sizes.stats.nixProcesses).toBe(1);
  });

  it('asks Nix once per path: the cache answers after that, for any closure holding it', async () => {
    const sizes = new StorePathSizes();
    await sizes.measure(tools.closure);
    const bash = tools.packages.find((p) => p.attr === 'bash')!.storePath;
    expect(multi.closure).toContain(bash);
    await sizes.measure([...tools.closure, bash]);
    expect(sizes.stats.nixProcesses).toBe(1);
    await sizes.measure(multi.closure); // only multi's own path is new
    expect(sizes.stats.nixProcesses).toBe(2);
    await sizes.measure(multi.closure);
    expect(sizes.stats.nixProcesses).toBe(2);
  });

  it('measures overlapping closures together, their union counting a shared path once', async () => {
    const sizes = new StorePathSizes();
    const { each, union } = await sizes.measureAll([tools.closure, multi.closure]);
    expect(sizes.stats.nixProcesses).toBe(1);
    expect(each.map((m) => m.count)).toEqual([tools.closure.length, multi.closure.length]);
    expect(union.count).toBe(new Set([...tools.closure, ...multi.closure]).size);
    expect(union.count).toBeLessThan(each[0]!.count + each[1]!.count);
    const bash = each[0]!.paths.find((p) => p.path.endsWith('-bash-static'))!;
    expect(each[1]!.paths).toContainEqual(bash);
    expect(union.totalBytes).toBe(each[0]!.totalBytes + each[1]!.totalBytes - bash.bytes);
  });

  it('shares one query between concurrent callers, and splits a long list into batches', async () => {
    const shared = new StorePathSizes();
    const [a, b] = await Promise.all([shared.measure(tools.closure), shared.measure([...tools.closure].reverse())]);
    expect(shared.stats.nixProcesses).toBe(1);
    expect(b.totalBytes).toBe(a.totalBytes);
    const batched = new StorePathSizes({ batchSize: 2 });
    expect((await batched.measure(tools.closure)).totalBytes).toBe(a.totalBytes);
    expect(batched.stats.nixProcesses).toBe(Math.ceil(tools.closure.length / 2));
  });

  it('says why when Nix cannot measure a path, and does not keep the failure', async () => {
    const sizes = new StorePathSizes();
    const gone = '/nix/store/00000000000000000000000000000000-not-in-the-store';
    const error = await rejectionOf(sizes.measure([...tools.closure, gone]), FnixError);
    expect(error.code).toBe('RUNTIME_UNAVAILABLE');
    expect(error.message).toContain(`path '${gone}' is not valid`);
    expect(error.details['path']).toBe(gone);
    expect((await sizes.measure(tools.closure)).count).toBe(tools.closure.length);
  });

  it('measures an empty closure without running Nix', async () => {
    const sizes = new StorePathSizes();
    expect(await sizes.measure([])).toEqual({ paths: [], count: 0, totalBytes: 0 });
    expect(sizes.stats.nixProcesses).toBe(0);
  });
});
