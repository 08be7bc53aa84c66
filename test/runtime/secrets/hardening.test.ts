/**
 * @module
 * What the security review of secrets asked for, each checked on the real code: a secret cannot be
 * removed while a deployment declaring it is activated (the store's holds, activate.ts), nor can an
 * activation go on with one whose removal is under way; a variable's value that is not UTF-8 is refused,
 * not changed; the masks of declared values (mask.ts) in what is kept of output, and where they stop; a
 * SPAWN frame in memory of its own, zeroed once written (AgentConnection.send); an Invocation that drops
 * its spawn request once sent; leftover temporary files of the stores swept when they open.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { Session as InspectorSession } from 'node:inspector';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { activateDeployment } from '../../../deployments/activate.ts';
import { missingSecrets } from '../../../deployments/check.ts';
import { type DeployContext, PreparedDeployments } from '../../../deployments/context.ts';
import type { Held } from '../../../deployments/lock.ts';
import type { DeploymentRecord } from '../../../deployments/records.ts';
import { FileKeyStore } from '../../../gateway/auth/keys/file-store.ts';
import { AgentConnection } from '../../../runtime/agent/connection.ts';
import { encodeSpawn, FRAME } from '../../../runtime/agent/protocol.ts';
import { FnixError } from '../../../runtime/errors.ts';
import { parseManifest } from '../../../runtime/functions/manifest.ts';
import type { FunctionVersion } from '../../../runtime/functions/version.ts';
import { type AgentChannel, Invocation } from '../../../runtime/invocation/invocation.ts';
import { createLogger } from '../../../runtime/log.ts';
import { deliverSecrets } from '../../../runtime/secrets/delivery.ts';
import { FileSecretStore, SECRETS_FILE } from '../../../runtime/secrets/file-store.ts';
import { MIN_MASKED_BYTES, NO_MASK, secretMask } from '../../../runtime/secrets/mask.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fnix-secrets-hardening-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function version(name: string, manifest: Record<string, unknown>): FunctionVersion {
  return { name, key: `${name}@1`, version: '1', manifest: parseManifest({ command: ['x'], ...manifest }, `${name}/function.json`) } as FunctionVersion;
}

async function rejection(promise: Promise<unknown>): Promise<FnixError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof FnixError)) throw new Error(`expected a FnixError, got ${String(error)}`);
  return error;
}

describe('the store holds a secret that a deployment being activated declares', () => {
  it('refuses its removal with SECRET_IN_USE until every hold is released', async () => {
    const store = await FileSecretStore.open({ stateDir: dir });
    await store.set('A_KEY', Buffer.from('value-a'));
    const first = store.hold(['A_KEY', 'A_KEY']);
    const second = store.hold(['A_KEY']);
    const refused = await rejection(store.remove('A_KEY'));
    expect(refused.code).toBe('SECRET_IN_USE');
    expect(refused.message).toContain('A_KEY');
    first();
    first(); // twice is once
    expect((await rejection(store.remove('A_KEY'))).code).toBe('SECRET_IN_USE');
    second();
    expect(await store.remove('A_KEY')).toBe(true);
    expect(store.has('A_KEY')).toBe(false);
  });

  it('no longer lists a secret whose removal is being written, and lists it again when that fails', async () => {
    const store = await FileSecretStore.open({ stateDir: dir });
    await store.set('A_KEY', Buffer.from('value-a'));
    const removing = store.remove('A_KEY');
    expect(store.has('A_KEY')).toBe(false);
    expect(store.list()).toEqual([]);
    await removing;
    await store.set('B_KEY', Buffer.from('value-b'));
    // A write that fails: secrets.json is now a folder that a rename cannot replace.
    await rm(join(dir, SECRETS_FILE));
    await mkdir(join(dir, SECRETS_FILE));
    await writeFile(join(dir, SECRETS_FILE, 'x'), 'x');
    const failing = store.remove('B_KEY');
    expect(store.has('B_KEY')).toBe(false);
    await expect(failing).rejects.toThrow();
    expect(store.has('B_KEY')).toBe(true);
    expect(store.list().map((s) => s.name)).toEqual(['B_KEY']);
  });
});

describe('activating a deployment while its secret is removed', () => {
  /** A deploy context around a real secret store: only what activateDeployment reads is real. */
  function context(store: FileSecretStore, warm: () => Promise<void>) {
    const served: FunctionVersion[][] = [];
    const record = { id: 'd1', commit: 'c'.repeat(40), result: 'ready', functions: [], activations: [] } as unknown as DeploymentRecord;
    const versions = [version('pay', { secrets: ['PAY_KEY'] })];
    const prepared = new PreparedDeployments();
    prepared.set('d1', { versions, broken: new Map() });
    const live: FunctionVersion[] = [];
    const ctx = {
      store: { get: async () => record, activate: async () => true, list: async () => [record], remove: async () => {} },
      repository: { has: async () => true, git: async () => ({ exitCode: 0, stderr: '' }) },
      prepared,
      secretNames: () => new Set(store.list().map((s) => s.name)),
      holdSecrets: (names: Iterable<string>) => store.hold(names),
      instances: { warm, serve: () => {} },
      registry: {
        versions: () => live,
        replaceAll: (next: FunctionVersion[]) => {
          live.splice(0, live.length, ...next);
          served.push(next);
        },
      },
      pool: { serve: () => {} },
      resolver: { pruneRoots: async () => [] },
      buildsDir: join(dir, 'builds'),
      historyLimit: 5,
      onDeployment: () => {},
      log: createLogger({ stream: { write: () => {} } }),
    } as unknown as DeployContext;
    return { ctx, served, live };
  }

  it('refuses the removal asked for while it warms up (the activation goes on, the secret stays)', async () => {
    const store = await FileSecretStore.open({ stateDir: dir });
    await store.set('PAY_KEY', Buffer.from('pay-value'));
    let removal: Promise<FnixError> | undefined;
    const { ctx, served } = context(store, async () => {
      // Seconds of serve instances starting, in a real one: a DELETE comes meanwhile.
      removal = rejection(store.remove('PAY_KEY'));
      await new Promise((resolve) => setTimeout(resolve, 20));
    });
    await activateDeployment(ctx, {} as Held, 'd1');
    expect((await removal!).code).toBe('SECRET_IN_USE');
    expect(served.map((versions) => versions.map((v) => v.name))).toEqual([['pay']]);
    expect(store.has('PAY_KEY')).toBe(true);
    // Once live, the hold is released (the live registry is what refuses it from then on, in the route).
    expect(await store.remove('PAY_KEY')).toBe(true);
  });

  it('is refused cleanly when a removal was under way as it began: nothing switched, nothing warmed', async () => {
    const store = await FileSecretStore.open({ stateDir: dir });
    await store.set('PAY_KEY', Buffer.from('pay-value'));
    let warmed = false;
    const { ctx, served } = context(store, async () => {
      warmed = true;
    });
    const removing = store.remove('PAY_KEY');
    const refused = await rejection(activateDeployment(ctx, {} as Held, 'd1'));
    expect(refused.code).toBe('DEPLOYMENT_REFUSED');
    expect(refused.message).toContain('PAY_KEY');
    expect([warmed, served.length]).toEqual([false, 0]);
    expect(await removing).toBe(true);
    expect(missingSecrets(ctx, [version('pay', { secrets: ['PAY_KEY'] })]).size).toBe(1);
  });
});

describe('a variable of a value that is not UTF-8', () => {
  const values = (data: Buffer) => ({ value: () => Buffer.from(data) });
  const invalid = Buffer.from([0x61, 0x62, 0xff, 0xfe, 0x63, 0x64]);

  it('is refused with SECRET_INVALID naming the secret and the file form, never changed', () => {
    let error: unknown;
    try {
      deliverSecrets(version('pay', { secrets: [{ name: 'BIN_KEY', env: 'BIN' }] }), values(invalid));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(FnixError);
    expect((error as FnixError).code).toBe('SECRET_INVALID');
    expect((error as FnixError).message).toMatch(/BIN_KEY .*BIN.*not valid UTF-8.*\/run\/secrets\/BIN_KEY/);
  });

  it('is fine as a file, byte for byte', () => {
    const delivery = deliverSecrets(version('pay', { secrets: ['BIN_KEY'] }), values(invalid));
    expect(delivery.files[0]!.data.equals(invalid)).toBe(true);
  });

  it('zeroes what was read before the refusal', () => {
    const read: Buffer[] = [];
    const store = {
      value: (name: string) => {
        const data = name === 'GOOD' ? Buffer.from('good-value') : Buffer.from(invalid);
        read.push(data);
        return data;
      },
    };
    expect(() => deliverSecrets(version('pay', { secrets: ['GOOD', { name: 'BIN_KEY', env: true }] }), store)).toThrow(/UTF-8/);
    expect(read.every((data) => data.every((byte) => byte === 0))).toBe(true);
  });
});

describe('secretMask', () => {
  const files = (entries: Record<string, string | Buffer>) => Object.entries(entries).map(([name, value]) => ({ name, data: Buffer.from(value) }));

  it('replaces every occurrence of each declared value with [secret NAME]', () => {
    const mask = secretMask(files({ API_KEY: 'sk_live_1234', DB: 'hunter22' }));
    expect(mask('key=sk_live_1234 db=hunter22 again sk_live_1234.')).toBe('key=[secret API_KEY] db=[secret DB] again [secret API_KEY].');
    expect(mask('nothing here')).toBe('nothing here');
    expect(mask('ünïcødé sk_live_1234 ✓')).toBe('ünïcødé [secret API_KEY] ✓');
  });

  it('masks the longer value where one holds the other', () => {
    const mask = secretMask(files({ SHORT: 'abcd', LONG: 'xxabcdxx' }));
    expect(mask('xxabcdxx abcd')).toBe('[secret LONG] [secret SHORT]');
  });

  it(`leaves values shorter than ${MIN_MASKED_BYTES} bytes alone (masking them would mask everything)`, () => {
    const mask = secretMask(files({ PIN: '123' }));
    expect(mask).toBe(NO_MASK);
    expect(mask('pin 123')).toBe('pin 123');
  });

  it('masks a value with a newline whole, and each of its lines on its own', () => {
    const mask = secretMask(files({ PEM: 'first-line\r\nsecond-line\nab' }));
    expect(mask('tail: first-line\r\nsecond-line\nab end')).toBe('tail: [secret PEM] end');
    expect(mask('first-line')).toBe('[secret PEM]');
    expect(mask('x second-line y')).toBe('x [secret PEM] y');
    expect(mask('ab')).toBe('ab'); // a line of it shorter than the minimum
  });

  it('masks a value that is not UTF-8 as output lines read it (invalid bytes as U+FFFD)', () => {
    const value = Buffer.from([0x6b, 0x65, 0x79, 0xff, 0x76, 0x61, 0x6c]);
    const mask = secretMask([{ name: 'BIN', data: value }]);
    expect(mask(`printed ${value.toString('utf8')} here`)).toBe('printed [secret BIN] here');
  });

  it('keeps copies of its own, zeroed by wipe (and then masks nothing)', () => {
    const data = Buffer.from('sk_live_1234');
    const mask = secretMask([{ name: 'API_KEY', data }]);
    data.fill(0);
    expect(mask('sk_live_1234')).toBe('[secret API_KEY]');
    mask.wipe();
    expect(mask('sk_live_1234')).toBe('sk_live_1234');
  });
});

describe('a SPAWN frame', () => {
  const request = { argv: ['x'], env: { A_KEY: 'env-secret-value' }, cwd: '/fn', files: [{ name: 'A_KEY', data: Buffer.from('file-secret-value') }] };

  it('is in memory of its own, not a slice of the shared pool', () => {
    const frame = encodeSpawn(request);
    expect(frame.byteOffset).toBe(0);
    expect(frame.buffer.byteLength).toBe(frame.length);
  });

  it('is zeroed once written, after the agent got it whole', async () => {
    const path = join(dir, 'agent.sock');
    const received: Buffer[] = [];
    let peer: Socket | undefined;
    const server = createServer((socket) => {
      peer = socket;
      socket.on('data', (chunk) => received.push(chunk));
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
    const socket = connect(path);
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    const connection = new AgentConnection(socket);
    const frame = encodeSpawn(request);
    const copy = Buffer.from(frame);
    connection.send(frame, { wipe: true });
    const other = Buffer.from([FRAME.KILL, 0, 0, 0, 0]);
    connection.send(other); // not wiped
    const deadline = Date.now() + 10_000;
    while (Buffer.concat(received).length < copy.length + other.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    while (frame.some((byte) => byte !== 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(Buffer.concat(received).equals(Buffer.concat([copy, other]))).toBe(true);
    expect(frame.every((byte) => byte === 0)).toBe(true);
    expect(other[0]).toBe(FRAME.KILL);
    connection.destroy('test over');
    peer?.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('is zeroed at once when the connection is closed already', async () => {
    const path = join(dir, 'closed.sock');
    const server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => server.listen(path, resolve));
    const socket = connect(path);
    const connection = new AgentConnection(socket);
    await connection.closed;
    const frame = encodeSpawn(request);
    connection.send(frame, { wipe: true });
    expect(frame.every((byte) => byte === 0)).toBe(true);
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});

describe('an Invocation', () => {
  it('sends its spawn request once, asking for it to be wiped, and keeps nothing of it', async () => {
    const sent: { frame: Buffer; wipe: boolean | undefined }[] = [];
    const channel: AgentChannel = {
      send: (frame, options) => sent.push({ frame, wipe: options?.wipe }),
      pause() {},
      resume() {},
      stdinWindow: 65536,
      destroy() {},
    };
    const spawn = { argv: ['x'], env: { A_KEY: 'env-secret-value' }, cwd: '/fn' };
    const invocation = new Invocation(channel, { id: 'i1', functionName: 'pay', spawn, timeoutMs: undefined, maxOutputBytes: 1000 });
    invocation.start();
    expect(sent).toHaveLength(1);
    expect(sent[0]!.wipe).toBe(true);
    expect(sent[0]!.frame.includes('env-secret-value')).toBe(true);
    expect(() => invocation.start()).toThrow(/started already/);
    // Nothing of the request is reachable from the invocation, private fields included (as the
    // inspector sees them), a few levels deep; the control: the frame's own bytes are found.
    const strings = await reachableStrings(invocation, 4);
    expect(strings.length).toBeGreaterThan(3);
    expect(strings).toContain('pay');
    expect(strings.filter((text) => text.includes('env-secret-value'))).toEqual([]);
    // The search finds a value where one is kept (a private field, three levels down).
    class Keeper {
      readonly #kept = { spawn: { env: { A_KEY: 'env-secret-value' } } };
      get size() {
        return Object.keys(this.#kept).length;
      }
    }
    expect(await reachableStrings(new Keeper(), 4)).toContain('env-secret-value');
  });

  it('masks the stderr tail of its result, and the lines it is asked to', async () => {
    const channel: AgentChannel = { send() {}, pause() {}, resume() {}, stdinWindow: 65536, destroy() {} };
    const mask = secretMask([{ name: 'A_KEY', data: Buffer.from('sk_live_1234') }]);
    const invocation = new Invocation(channel, {
      id: 'i1',
      functionName: 'pay',
      spawn: { argv: ['x'], env: {}, cwd: '/fn' },
      timeoutMs: undefined,
      maxOutputBytes: 1000,
      mask,
    });
    invocation.start();
    invocation.handleFrame(FRAME.STDERR, Buffer.from('oops: sk_live_1234\n'));
    expect(invocation.mask('key sk_live_1234')).toBe('key [secret A_KEY]');
    const status = Buffer.alloc(5);
    status.writeUInt32BE(3, 1);
    invocation.handleFrame(FRAME.EXIT, status);
    const result = await invocation.done;
    expect(result.stderrTail).toBe('oops: [secret A_KEY]\n');
    expect(result.error?.details['stderr']).toBe('oops: [secret A_KEY]\n');
    // Wiped once stderr has ended (after whoever kept its lines had them).
    invocation.stderr.resume();
    await new Promise((resolve) => invocation.stderr.once('end', resolve));
    expect(invocation.mask('sk_live_1234')).toBe('sk_live_1234');
  });
});

/** The strings reachable from `value` through own and private properties, `depth` levels deep (node:inspector). */
async function reachableStrings(value: object, depth: number): Promise<string[]> {
  const session = new InspectorSession();
  session.connect();
  const post = <T>(method: string, params: object) =>
    new Promise<T>((resolve, reject) => session.post(method, params, (error, result) => (error ? reject(error) : resolve(result as T))));
  type Remote = { type: string; value?: unknown; objectId?: string };
  type Property = { name: string; value?: Remote };
  const holder = globalThis as { __reachable?: object };
  holder.__reachable = value;
  const found: string[] = [];
  try {
    const root = await post<{ result: Remote }>('Runtime.evaluate', { expression: 'globalThis.__reachable' });
    const walk = async (remote: Remote | undefined, left: number): Promise<void> => {
      if (!remote) return;
      if (remote.type === 'string') found.push(String(remote.value));
      if (!remote.objectId || left === 0) return;
      const { result, privateProperties = [] } = await post<{ result: Property[]; privateProperties?: Property[] }>('Runtime.getProperties', {
        objectId: remote.objectId,
        ownProperties: true,
      });
      for (const property of [...result, ...privateProperties]) await walk(property.value, left - 1);
    };
    await walk(root.result, depth);
  } finally {
    delete holder.__reachable;
    session.disconnect();
  }
  return found;
}

describe('the stores sweep the temporary files a killed process left', () => {
  it('secrets.json and secrets.key leftovers go when the secret store opens; other files stay', async () => {
    const leftovers = [`${SECRETS_FILE}.4242.0a1b2c3d.tmp`, `secrets.key.4242.deadbeef.tmp`];
    for (const name of [...leftovers, 'secrets.json.notes', 'other.tmp']) await writeFile(join(dir, name), randomBytes(8));
    await FileSecretStore.open({ stateDir: dir });
    expect((await readdir(dir)).sort()).toEqual(['other.tmp', 'secrets.json.notes', 'secrets.key']);
  });

  it('.keys.json leftovers go when the key store opens', async () => {
    await writeFile(join(dir, '.keys.json.4242.7.tmp'), '{"version":1,"keys":[]}');
    await writeFile(join(dir, 'keep.tmp'), 'x');
    const keys = await FileKeyStore.open({ stateDir: dir });
    await keys.create({ name: 'ci' });
    await keys.close();
    expect((await readdir(dir)).sort()).toEqual(['keep.tmp', 'keys.json']);
  });
});
