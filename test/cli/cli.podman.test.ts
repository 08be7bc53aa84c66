/**
 * @module
 * The `fnix` binary (bin/fnix.mjs, run as a child process) against a real gateway with real containers:
 * status, ls, show, invoke (greeting, a binary body both ways, errors and their exit codes), login and
 * its credentials file, an unreachable gateway, a wrong token, --json, sessions over pipes, deploy from a
 * temporary git repository (git's progress live, the token in no process's argv nor in .git/config, a
 * refused push), deployments and rollback; and, against the API contract of issue 17, logs, invocation
 * records, secrets and invoke keys.
 */
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES_DIR, FIXTURES_DIR, startTestGateway, TEST_TOKEN, type TestGateway } from '../helpers/gateway.ts';
import { git } from '../helpers/git.ts';
import { waitUntil } from '../helpers/processes.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin/fnix.mjs');
/** hello's answer (execa drops the last newline of an output). */
const GREETING = 'Hello, world! This is fnix.';
/** The gzip bytes the `answers` function sends as they are, with Content-Encoding: gzip. */
const GZIPPED = gzipSync(Buffer.from('compressed by the function, '.repeat(500)));
/** The body of the `answers` function's own 401: shaped like a gateway error, but not one. */
const OWN_401 = '{"error":{"code":"NOT_YOURS","message":"the function itself says no"}}';
/** The functions the gateway serves. */
const FUNCTIONS = ['answers', 'counter-py', 'echo', 'exit-3', 'hello', 'private-hello', 'teapot'];

let gateway: TestGateway;
let work: string;
let functionsDir: string;
/** XDG_CONFIG_HOME of the CLI runs: a folder of this test's, so that no real credentials file is read or written. */
let config: string;

/** The environment of a CLI run: only what is given, PATH and HOME (no FNIX_* of the outer shell). */
const envOf = (extra: Record<string, string | undefined>) =>
  Object.fromEntries(
    Object.entries({ PATH: process.env['PATH'], HOME: work, XDG_CONFIG_HOME: config, FNIX_URL: gateway.url, FNIX_TOKEN: TEST_TOKEN, ...extra }).filter(
      ([, value]) => value !== undefined,
    ),
  ) as Record<string, string>;

/** Runs `fnix args...` with stdin closed (/dev/null); resolves with its result, failed or not. */
function fnix(args: string[], extra: Record<string, string | undefined> = {}) {
  return execa('node', [BIN, ...args], { cwd: work, env: envOf(extra), extendEnv: false, stdin: 'ignore', reject: false, timeout: 60_000 });
}
/** The same with stdout as bytes. */
function fnixBytes(args: string[], extra: Record<string, string | undefined> = {}) {
  return execa('node', [BIN, ...args], {
    cwd: work,
    env: envOf(extra),
    extendEnv: false,
    stdin: 'ignore',
    reject: false,
    encoding: 'buffer',
    stripFinalNewline: false,
    timeout: 60_000,
  });
}
/** `cat file | fnix args...`: a real shell pipe on stdin, as a user's. */
function fnixPiped(file: string, args: string[], extra: Record<string, string | undefined> = {}) {
  return execa('bash', ['-c', 'file=$1 bin=$2; shift 2; cat "$file" | node "$bin" "$@"', 'fnix-pipe', file, BIN, ...args], {
    cwd: work,
    env: envOf(extra),
    extendEnv: false,
    reject: false,
    timeout: 60_000,
  });
}
/** The same with stdout as bytes. */
function fnixPipedBytes(file: string, args: string[]) {
  return execa('bash', ['-c', 'file=$1 bin=$2; shift 2; cat "$file" | node "$bin" "$@"', 'fnix-pipe', file, BIN, ...args], {
    cwd: work,
    env: envOf({}),
    extendEnv: false,
    reject: false,
    encoding: 'buffer',
    stripFinalNewline: false,
    timeout: 60_000,
  });
}
/** A file of `content` in the work folder. */
async function fileOf(content: string | Buffer): Promise<string> {
  const path = join(work, `input-${randomBytes(4).toString('hex')}`);
  await writeFile(path, content);
  return path;
}

beforeAll(async () => {
  // The binary runs the compiled CLI: build it as `npm start` and `npm test` do.
  // (A build that fails on another area's half-written code leaves the last dist/: the CLI's own files are checked by tsc.)
  const built = await execa('bash', [join(ROOT, 'scripts/build.sh')], { cwd: ROOT, reject: false, all: true });
  if (built.exitCode !== 0) console.warn(`scripts/build.sh failed; the CLI runs as last built:\n${built.all}`);
  work = await mkdtemp(join(tmpdir(), 'fnix-cli-'));
  config = join(work, 'config');
  functionsDir = join(work, 'functions');
  for (const name of ['hello', 'echo', 'teapot', 'counter-py']) await cp(join(EXAMPLES_DIR, name), join(functionsDir, name), { recursive: true });
  await cp(join(FIXTURES_DIR, 'exit-3'), join(functionsDir, 'exit-3'), { recursive: true });
  // A private function (area C): hello's script, behind an invoke key.
  await cp(join(EXAMPLES_DIR, 'hello'), join(functionsDir, 'private-hello'), { recursive: true });
  await writeFile(join(functionsDir, 'private-hello/function.json'), JSON.stringify({ packages: ['busybox'], command: ['./hello.sh'], access: 'key' }));
  // A CGI function whose answers a client could mistake: a gzip-encoded body, and a 401 of its own whose
  // body looks like a gateway error. It says which Accept-Encoding it was sent.
  await mkdir(join(functionsDir, 'answers'));
  await writeFile(join(functionsDir, 'answers/payload.gz'), GZIPPED);
  await writeFile(join(functionsDir, 'answers/function.json'), JSON.stringify({ packages: ['busybox'], command: ['./answers.sh'], cgi: true }));
  await writeFile(
    join(functionsDir, 'answers/answers.sh'),
    [
      '#!/usr/bin/env sh',
      'case "$PATH_INFO" in',
      `  /gzip) printf 'Content-Type: text/plain\\r\\nContent-Encoding: gzip\\r\\nX-Seen-Accept-Encoding: %s\\r\\n\\r\\n' "\${HTTP_ACCEPT_ENCODING:-none}"; exec cat ./payload.gz ;;`,
      `  *) printf 'Status: 401 Unauthorized\\r\\nContent-Type: application/json\\r\\n\\r\\n'; printf '%s\\n' '${OWN_401}' ;;`,
      'esac',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  gateway = await startTestGateway({ functionsDir });
});
afterAll(async () => {
  await gateway?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('fnix status, ls, show', () => {
  it('status shows the health, the pool and the live deployment', async () => {
    const result = await fnix(['status']);
    expect(result.exitCode, result.stderr).toBe(0);
    const { deployments } = JSON.parse((await fnix(['deployments', '--json'])).stdout);
    expect(result.stdout).toMatch(new RegExp(`^gateway +${gateway.url} ok$`, 'm'));
    expect(result.stdout).toMatch(/^podman +\d+\.\d+\.\d+ \(\S*runc, /m);
    expect(result.stdout).toMatch(/^nix +.*\d+\.\d+/m);
    expect(result.stdout).toMatch(/^packages +\w+: /m);
    expect(result.stdout).toMatch(/^pool +\d+ of 8 containers: \d+ warm, /m);
    expect(result.stdout).toContain(`live       ${deployments[0].id}, commit ${deployments[0].commit.slice(0, 12)}`);
    expect(result.stdout).toMatch(new RegExp(`^functions +${FUNCTIONS.length} ready$`, 'm'));
    // No colours when stdout is not a terminal.
    expect(result.stdout).not.toContain('\u001b[');
    const json = JSON.parse((await fnix(['status', '--json'])).stdout);
    expect(json.url).toBe(gateway.url);
    expect(json.health.pool.max).toBe(8);
    expect(json.health.podman.ociRuntime).toMatch(/runc$/);
    expect(json.deployment).toMatchObject({ id: deployments[0].id, status: 'active' });
  });

  it('ls lists the functions in a table, and as JSON', async () => {
    const result = await fnix(['ls']);
    expect(result.exitCode, result.stderr).toBe(0);
    const lines = result.stdout.split('\n');
    expect(lines[0]).toMatch(/^NAME +STATUS +VERSION +PACKAGES +CLOSURE$/);
    expect(lines.find((l) => l.startsWith('hello '))).toMatch(/^hello +ready +[0-9a-f]+ +busybox +[\d.]+ MiB$/);
    expect(result.stdout).toMatch(new RegExp(`^${FUNCTIONS.length} functions; their closures together: \\d+ store paths, [\\d.]+ MiB$`, 'm'));
    const json = JSON.parse((await fnix(['ls', '--json'])).stdout);
    expect(json.functions.map((f: any) => f.name)).toEqual(FUNCTIONS);
  });

  it("show gives a function's version, packages, closure, and a serve function's instances", async () => {
    const json = JSON.parse((await fnix(['show', 'hello', '--json'])).stdout);
    const shown = await fnix(['show', 'hello']);
    expect(shown.exitCode, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(new RegExp(`^version +${json.version}$`, 'm'));
    expect(shown.stdout).toMatch(/^packages +busybox$/m);
    expect(shown.stdout).toContain(json.storePaths[0]);
    expect(shown.stdout).toMatch(new RegExp(`^closure +${json.closure.count} store paths?, [\\d.]+ MiB$`, 'm'));
    const served = await fnix(['show', 'counter-py']);
    expect(served.stdout).toMatch(/^INSTANCE +STATE +VERSION +IN FLIGHT +REQUESTS +STARTED +CONTAINER$/m);
    const instances = JSON.parse((await fnix(['show', 'counter-py', '--json'])).stdout).instances;
    expect(instances.length).toBeGreaterThanOrEqual(1);
    expect(served.stdout).toContain(instances[0].id);
    const unknown = await fnix(['show', 'nope']);
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr).toContain('fnix: FUNCTION_NOT_FOUND (404): no function named "nope" is deployed');
  });
});

describe('fnix invoke', () => {
  it('greets', async () => {
    const result = await fnix(['invoke', 'hello']);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toBe(GREETING);
    expect((await fnix(['invoke', 'hello', '?name=Ada'])).stdout).toBe('Hello, Ada! This is fnix.');
  });

  it('sends a binary body and writes the answer to stdout byte for byte: from a file, and from a piped stdin', async () => {
    const body = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(300_000), Buffer.from('\r\n\0\n')]);
    const file = await fileOf(body);
    const fromFile = await fnixBytes(['invoke', 'echo', '--data-binary', `@${file}`]);
    expect(fromFile.exitCode, Buffer.from(fromFile.stderr).toString()).toBe(0);
    expect(Buffer.compare(Buffer.from(fromFile.stdout), body)).toBe(0);
    const piped = await fnixPipedBytes(file, ['invoke', 'echo', 'some/path']);
    expect(piped.exitCode, Buffer.from(piped.stderr).toString()).toBe(0);
    expect(Buffer.compare(Buffer.from(piped.stdout), body)).toBe(0);
    // Into a reader that goes away early (`| head`): no stack trace, and the exit code is not an error's.
    const big = await fileOf(randomBytes(4 * 1024 * 1024));
    const cut = await execa('bash', ['-c', 'node "$1" invoke echo --data-binary @"$2" | head -c 10 | wc -c; echo "exit $PIPESTATUS"', 'x', BIN, big], {
      env: envOf({}),
      extendEnv: false,
      reject: false,
    });
    expect(cut.stdout).toBe('10\nexit 0');
    expect(cut.stderr).toBe('');
    const data = await fnix(['invoke', 'echo', '-X', 'PUT', '-d', 'as given', '-H', 'X-Test: 1']);
    expect(data.stdout).toBe('as given');
  });

  it('on an error answer prints the code, message and invocation id on stderr, and exits 1; -i shows the head', async () => {
    const failed = await fnix(['invoke', 'exit-3', '-i']);
    expect(failed.exitCode).toBe(1);
    expect(failed.stdout).toBe('');
    const id = /^x-fnix-invocation-id: (\S+)$/m.exec(failed.stderr)?.[1];
    expect(id, failed.stderr).toBeDefined();
    expect(failed.stderr).toMatch(/^HTTP 502 Bad Gateway$/m);
    expect(failed.stderr).toMatch(/^fnix: FUNCTION_FAILED \(502\): .+/m);
    expect(failed.stderr).toContain(`  invocation: ${id} (fnix invocation ${id})`);
    const unknown = await fnix(['invoke', 'nope']);
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr).toMatch(/^fnix: FUNCTION_NOT_FOUND \(404\): /m);
    // A function's own error answer is its output: the body on stdout, the status on stderr, exit 1.
    const teapot = await fnix(['invoke', 'teapot']);
    expect(teapot.exitCode).toBe(1);
    expect(JSON.parse(teapot.stdout)).toEqual({ short: true, stout: true, method: 'GET' });
    expect(teapot.stderr).toMatch(/^fnix: teapot answered 418 I'm a Teapot \(invocation \S+\)$/im);
    // The gateway marks its own errors with x-fnix-error; the function's answers have no such header.
    expect(failed.stderr).toMatch(/^x-fnix-error: FUNCTION_FAILED$/im);
    expect((await fnix(['invoke', 'nope', '-i'])).stderr).toMatch(/^x-fnix-error: FUNCTION_NOT_FOUND$/im);
    expect((await fnix(['invoke', 'teapot', '-i'])).stderr).not.toMatch(/^x-fnix-error:/im);
  });

  it('writes a gzip-encoded answer as the function sent it, undecoded, having asked for no encoding', async () => {
    const result = await fnixBytes(['invoke', 'answers', 'gzip', '-i']);
    const stderr = Buffer.from(result.stderr).toString();
    expect(result.exitCode, stderr).toBe(0);
    expect(Buffer.compare(Buffer.from(result.stdout), GZIPPED)).toBe(0);
    expect(stderr).toMatch(/^Content-Encoding: gzip$/im);
    // The request carried no Accept-Encoding (fetch would have sent `gzip, deflate`).
    expect(stderr).toMatch(/^X-Seen-Accept-Encoding: none$/im);
  });

  it("takes a function's own 401 with an error-shaped body as its answer: body on stdout, status on stderr, exit 1 (not 4)", async () => {
    const result = await fnix(['invoke', 'answers']);
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stdout).toBe(OWN_401);
    expect(result.stderr).toMatch(/^fnix: answers answered 401 Unauthorized \(invocation \S+\)$/m);
    expect(result.stderr).not.toContain('NOT_YOURS');
  });

  it("with -n leaves a loop's piped input to the loop; without it the first call takes the rest", async () => {
    const loop = (flag: string) =>
      execa('bash', ['-c', `printf 'Ada\\nBob\\nCy\\n' | while read -r name; do node "$1" invoke ${flag} hello "?name=$name"; done`, 'loop', BIN], {
        env: envOf({}),
        extendEnv: false,
        reject: false,
        timeout: 60_000,
      });
    const kept = await loop('-n');
    expect(kept.exitCode, kept.stderr).toBe(0);
    expect(kept.stdout.split('\n')).toEqual(['Hello, Ada! This is fnix.', 'Hello, Bob! This is fnix.', 'Hello, Cy! This is fnix.']);
    // The pitfall -n is for: the first call reads "Bob\nCy\n" as its body, and the loop ends.
    const swallowed = await loop('');
    expect(swallowed.stdout.split('\n')).toEqual(['Hello, Ada! This is fnix.']);
  });

  it('exits 2 on a usage mistake', async () => {
    for (const args of [['invoke'], ['invoke', 'echo', '-H', 'no colon'], ['invoke', 'echo', '-d', 'x', '--data-binary', 'y'], ['nope']]) {
      const result = await fnix(args);
      expect(result.exitCode, args.join(' ')).toBe(2);
      expect(result.stderr, args.join(' ')).not.toBe('');
    }
  });
});

describe('tokens and the gateway address', () => {
  it('exits 3 naming the URL and FNIX_URL when the gateway cannot be reached', async () => {
    const port = await closedPort();
    const result = await fnix(['ls'], { FNIX_URL: `http://127.0.0.1:${port}` });
    expect(result.exitCode).toBe(3);
    expect(result.stderr).toContain(`fnix: GATEWAY_UNREACHABLE: cannot reach the fnix gateway at http://127.0.0.1:${port} (ECONNREFUSED)`);
    expect(result.stderr).toContain('FNIX_URL=');
    const invoke = await fnix(['invoke', 'hello'], { FNIX_URL: `http://127.0.0.1:${port}` });
    expect(invoke.exitCode).toBe(3);
  });

  it('exits 4 on a wrong token, and on none', async () => {
    const wrong = await fnix(['ls'], { FNIX_TOKEN: 'wrong-token-0123456789' });
    expect(wrong.exitCode).toBe(4);
    expect(wrong.stderr).toContain('fnix: UNAUTHORIZED (401): ');
    expect(wrong.stderr).toContain('hint: FNIX_TOKEN is not the deploy token of');
    const none = await fnix(['deployments'], { FNIX_TOKEN: undefined });
    expect(none.exitCode).toBe(4);
    expect(none.stderr).toContain('set FNIX_TOKEN or run `fnix login`');
  });

  it('login checks the token, writes the credentials file with mode 0600, and later commands use it', async () => {
    const path = join(config, 'fnix/credentials.json');
    const refused = await fnix(['login', '--token', 'wrong-token-0123456789'], { FNIX_TOKEN: undefined });
    expect(refused.exitCode).toBe(4);
    await expect(stat(path)).rejects.toThrow(/ENOENT/);
    const tokenFile = await fileOf(`${TEST_TOKEN}\n`);
    const login = await fnixPiped(tokenFile, ['login'], { FNIX_TOKEN: undefined });
    expect(login.exitCode, login.stderr).toBe(0);
    expect(login.stdout).toBe(`logged in to ${gateway.url}; the token is saved in ${path}`);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(config, 'fnix'))).mode & 0o777).toBe(0o700);
    const saved = JSON.parse(await readFile(path, 'utf8'));
    expect(saved).toMatchObject({ current: gateway.url, gateways: { [gateway.url]: { token: TEST_TOKEN } } });
    // Neither FNIX_TOKEN nor FNIX_URL: the file says both.
    const listed = await fnix(['deployments', '--json'], { FNIX_TOKEN: undefined, FNIX_URL: undefined });
    expect(listed.exitCode, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout).deployments.length).toBeGreaterThanOrEqual(1);
    // FNIX_TOKEN wins over the file.
    expect((await fnix(['deployments'], { FNIX_TOKEN: 'wrong-token-0123456789', FNIX_URL: undefined })).exitCode).toBe(4);
    await rm(path);
  });
});

describe('fnix session', () => {
  it("pipes stdin to the function and its output back, and exits with the function's exit code", async () => {
    const input = await fileOf('through the channel protocol\n');
    const echoed = await fnixPiped(input, ['session', 'echo']);
    expect(echoed.exitCode, echoed.stderr).toBe(0);
    expect(echoed.stdout).toBe('through the channel protocol');
    const failed = await fnix(['session', 'exit-3']);
    expect(failed.stderr).toContain('something broke');
    expect(failed.exitCode).toBe(3);
    const refused = await fnix(['session', 'nope']);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain('fnix: FUNCTION_NOT_FOUND (404)');
    // scripts/session.mjs is the same command.
    const script = await execa('bash', ['-c', 'cat "$1" | node "$2" echo', 'x', input, join(ROOT, 'scripts/session.mjs')], {
      env: envOf({}),
      extendEnv: false,
      reject: false,
    });
    expect(script.stdout).toBe('through the channel protocol');
  });
});

// Area A of issue 17: the records and logs routes.
describe('fnix logs, invocations, invocation', () => {
  it("logs shows an invocation's stderr lines as `time stream [invocation] line`, and as JSON", async () => {
    const marker = `marker-${randomBytes(4).toString('hex')}`;
    const invoked = await fnix(['invoke', 'echo', marker, '-d', 'x', '-i']);
    const id = /^x-fnix-invocation-id: (\S+)$/m.exec(invoked.stderr)![1]!;
    let lines: any[] = [];
    await waitUntil(
      async () => {
        const result = await fnix(['logs', 'echo', '--json', '--invocation', id]);
        if (result.stderr.includes('ROUTE_NOT_FOUND')) throw new Error(`the logs route is not there: ${result.stderr}`);
        lines = result.exitCode === 0 ? JSON.parse(result.stdout).lines : [];
        return lines.some((l) => l.line.includes(marker));
      },
      20_000,
      'the line in the logs',
    );
    expect(lines.find((l) => l.line.includes(marker))).toMatchObject({ function: 'echo', invocationId: id, stream: 'stderr', line: `POST /${marker}` });
    const text = await fnix(['logs', 'echo', '--since', '10m', '--limit', '50']);
    expect(text.exitCode, text.stderr).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z stderr \\[${id}\\] POST /${marker}$`, 'm'));
    expect((await fnix(['logs', 'echo', '--since', '10 minutes'])).exitCode).toBe(2);
  });

  it("logs --follow prints the next invocation's stderr as it happens", async () => {
    const follower = execa('node', [BIN, 'logs', 'echo', '--follow'], { env: envOf({}), extendEnv: false, stdin: 'ignore', reject: false });
    let output = '';
    let errors = '';
    follower.stdout!.on('data', (chunk: Buffer) => (output += chunk));
    follower.stderr!.on('data', (chunk: Buffer) => (errors += chunk));
    try {
      const marker = `follow-${randomBytes(4).toString('hex')}`;
      // Invoked until the follower shows it: the stream may open after the first invocation.
      await waitUntil(
        async () => {
          if (output.includes(marker)) return true;
          if (follower.exitCode !== null) throw new Error(`fnix logs --follow ended: ${errors}`);
          await fnix(['invoke', 'echo', marker, '-d', 'x']);
          await new Promise((resolve) => setTimeout(resolve, 500));
          return output.includes(marker);
        },
        30_000,
        'the followed line',
      );
      expect(output).toMatch(new RegExp(`stderr \\[\\S+\\] POST /${marker}$`, 'm'));
    } finally {
      follower.kill('SIGINT');
      await follower;
    }
  });

  it('invocations lists the records, and invocation shows one with its lines; a failure leads to its record', async () => {
    const failed = await fnix(['invoke', 'exit-3', '-i']);
    const id = /^x-fnix-invocation-id: (\S+)$/m.exec(failed.stderr)![1]!;
    await waitUntil(
      async () => {
        const result = await fnix(['invocation', id, '--json']);
        if (result.stderr.includes('ROUTE_NOT_FOUND')) throw new Error(`the invocations route is not there: ${result.stderr}`);
        return result.exitCode === 0;
      },
      20_000,
      'the record',
    );
    const { invocation, lines } = JSON.parse((await fnix(['invocation', id, '--json'])).stdout);
    expect(invocation).toMatchObject({ id, function: 'exit-3', kind: 'http', outcome: 'FUNCTION_FAILED', exitCode: 3 });
    expect(lines.map((l: any) => l.line)).toContain('something broke');
    const shown = await fnix(['invocation', id]);
    expect(shown.stdout).toMatch(/^outcome +FUNCTION_FAILED$/m);
    expect(shown.stdout).toMatch(/^exit code +3$/m);
    expect(shown.stdout).toContain(`stderr [${id}] something broke`);
    const listed = JSON.parse((await fnix(['invocations', 'exit-3', '--json', '--limit', '5'])).stdout);
    expect(listed.invocations[0].id).toBe(id);
    const table = await fnix(['invocations', 'exit-3']);
    expect(table.stdout.split('\n')[0]).toMatch(/^ID +STARTED +KIND +OUTCOME +STATUS +EXIT +DURATION +IN +OUT +START$/);
    expect(table.stdout).toMatch(new RegExp(`^${id} +\\S+ +http +FUNCTION_FAILED +502 +3 `, 'm'));
    const unknown = await fnix(['invocation', 'no-such-invocation']);
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr).toContain('fnix: INVOCATION_NOT_FOUND (404)');
  });
});

// Area B of issue 17: the secrets routes.
describe('fnix secret', () => {
  it('sets a secret from stdin, lists it without its value, and removes it', async () => {
    const value = `cli-secret-${randomBytes(8).toString('hex')}`;
    const set = await fnixPiped(await fileOf(value), ['secret', 'set', 'CLI_TEST_SECRET']);
    expect(set.exitCode, set.stderr).toBe(0);
    expect(set.stdout).toBe('secret CLI_TEST_SECRET set');
    const listed = await fnix(['secret', 'ls']);
    expect(listed.stdout).toMatch(/^NAME +SET +USED BY$/m);
    expect(listed.stdout).toMatch(/^CLI_TEST_SECRET +\d+ s ago +-$/m);
    const json = await fnix(['secret', 'ls', '--json']);
    expect(JSON.parse(json.stdout).secrets.map((s: any) => s.name)).toContain('CLI_TEST_SECRET');
    for (const output of [set.stdout, set.stderr, listed.stdout, json.stdout]) expect(output).not.toContain(value);
    const removed = await fnix(['secret', 'rm', 'CLI_TEST_SECRET']);
    expect(removed.exitCode, removed.stderr).toBe(0);
    const again = await fnix(['secret', 'rm', 'CLI_TEST_SECRET']);
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toContain('fnix: SECRET_NOT_FOUND (404)');
  });
});

// Area C of issue 17: invoke keys.
describe('fnix key', () => {
  it('creates a key shown once, which opens a private function until it is revoked', async () => {
    const denied = await fnix(['invoke', 'private-hello']);
    expect(denied.exitCode).toBe(4);
    expect(denied.stderr).toContain('fnix: KEY_REQUIRED (401)');
    const created = await fnix(['key', 'create', '--function', 'private-hello', '--name', 'cli-test']);
    expect(created.exitCode, created.stderr).toBe(0);
    const key = created.stdout.trim();
    expect(key).toMatch(/^\S{16,}$/);
    const id = /^fnix: key (\S+) \(cli-test\) for private-hello; it is shown only now$/m.exec(created.stderr)?.[1];
    expect(id, created.stderr).toBeDefined();
    expect((await fnix(['invoke', 'private-hello', '--key', key])).stdout).toBe(GREETING);
    expect((await fnix(['invoke', 'private-hello'], { FNIX_KEY: key })).stdout).toBe(GREETING);
    const session = await fnix(['session', 'private-hello', '--key', key]);
    expect(session.stdout, session.stderr).toBe(GREETING);
    const listed = JSON.parse((await fnix(['key', 'ls', '--json'])).stdout);
    expect(listed.keys.find((k: any) => k.id === id)).toMatchObject({ name: 'cli-test', function: 'private-hello' });
    expect(JSON.stringify(listed)).not.toContain(key);
    expect((await fnix(['key', 'ls'])).stdout).toMatch(new RegExp(`^${id} +cli-test +private-hello +`, 'm'));
    expect((await fnix(['key', 'revoke', id!])).exitCode).toBe(0);
    const revoked = await fnix(['invoke', 'private-hello', '--key', key]);
    expect(revoked.exitCode).toBe(4);
    expect(revoked.stderr).toContain('fnix: KEY_INVALID (401)');
    expect((await fnix(['key', 'revoke', id!])).stderr).toContain('KEY_NOT_FOUND');
  });
});

describe('fnix deploy, deployments, rollback', () => {
  let repo: string;
  const commit = async (message: string) => {
    await git(repo, 'add', '--all');
    expect((await git(repo, 'commit', '--quiet', '-m', message)).exitCode).toBe(0);
  };
  const gitEnv = {
    GIT_AUTHOR_NAME: 'dev',
    GIT_AUTHOR_EMAIL: 'dev@example.com',
    GIT_COMMITTER_NAME: 'dev',
    GIT_COMMITTER_EMAIL: 'dev@example.com',
    GIT_CONFIG_GLOBAL: '/dev/null',
  };

  beforeAll(async () => {
    // A repository of the user's own, unrelated to the gateway's history: the same functions, hello changed.
    repo = join(work, 'repo');
    await cp(functionsDir, join(repo, 'functions'), { recursive: true });
    await writeFile(join(repo, 'functions/hello/hello.sh'), '#!/usr/bin/env sh\necho "Hello from a deploy."\n', { mode: 0o755 });
    await git(repo, 'init', '--quiet', '--initial-branch', 'work');
    await commit('hello, deployed by fnix deploy');
  });

  it("refuses to replace main with an unrelated history, then --force pushes it: git's progress live, the new version served", async () => {
    const plain = await fnix(['deploy', '--dir', join(repo, 'functions')], gitEnv);
    expect(plain.exitCode).toBe(1);
    expect(plain.stderr).toContain("fnix: PUSH_REFUSED: the gateway's main has commits that HEAD does not");
    expect(plain.stderr).toContain('fnix deploy --force');
    expect((await fnix(['invoke', 'hello'])).stdout).toBe(GREETING);

    // Every process's argv while the push runs: the token must be in none of them.
    const seen = new Set<string>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        for (const pid of await readdir('/proc').catch(() => [])) {
          if (!/^\d+$/.test(pid)) continue;
          const argv = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
          if (argv.includes('git') || argv.includes(BIN)) seen.add(argv.replaceAll('\0', ' '));
        }
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    const deployer = execa('node', [BIN, 'deploy', '--force'], { cwd: repo, env: envOf(gitEnv), extendEnv: false, stdin: 'ignore', reject: false, all: true });
    // git's remote: lines arrive while the push runs, before fnix exits.
    let early = '';
    deployer.all!.on('data', (chunk: Buffer) => {
      if (deployer.exitCode === null) early += chunk;
    });
    const deployed = await deployer;
    watching = false;
    await watcher;
    expect(deployed.exitCode, deployed.all).toBe(0);
    expect(early).toContain('remote: functions/hello: building...');
    expect(deployed.stderr).toMatch(/remote: functions\/hello: built in [\d.]+ s, closure /);
    expect(deployed.stderr).toMatch(/remote: deployment d-[\w-]+ is live: /);
    expect(deployed.stdout).toMatch(new RegExp(`^deployed: d-[\\w-]+ is live: ${FUNCTIONS.join(', ')}$`));
    expect((await fnix(['invoke', 'hello'])).stdout).toBe('Hello from a deploy.');
    expect(
      [...seen].some((argv) => argv.includes('functions.git')),
      [...seen].join('\n'),
    ).toBe(true);
    for (const argv of seen) expect(argv).not.toContain(TEST_TOKEN);
    expect(await readFile(join(repo, '.git/config'), 'utf8')).not.toContain(TEST_TOKEN);
    // Pushed again with nothing new: nothing changes.
    const again = await fnix(['deploy', '--dir', repo], gitEnv);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/^nothing new to deploy: d-[\w-]+ \(commit [0-9a-f]{12}\) stays live$/);
  });

  it('exits non-zero when the gateway refuses the push, and the old version stays', async () => {
    await writeFile(join(repo, 'functions/hello/function.json'), JSON.stringify({ packages: ['busybox'], command: ['./hello.sh'], timeoutMs: '30s' }));
    await commit('a typo');
    const refused = await fnix(['deploy', '--dir', repo], gitEnv);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain("remote:   functions/hello/function.json: field 'timeoutMs'");
    expect(refused.stderr).toContain('fnix: PUSH_REFUSED: the push was refused; the lines above say why');
    expect((await fnix(['invoke', 'hello'])).stdout).toBe('Hello from a deploy.');
    const empty = await fnix(['deploy', '--dir', work]);
    expect(empty.exitCode).toBe(2);
    expect(empty.stderr).toContain('NOT_A_GIT_REPOSITORY');
  });

  it('deployments lists the history; rollback makes an earlier one live again', async () => {
    const { deployments } = JSON.parse((await fnix(['deployments', '--json'])).stdout);
    expect(deployments.map((d: any) => d.status)).toEqual(expect.arrayContaining(['active', 'superseded', 'refused']));
    const table = await fnix(['deployments']);
    expect(table.stdout.split('\n')[0]).toMatch(/^ID +STATUS +SOURCE +COMMIT +CREATED +FUNCTIONS +SUBJECT$/);
    const imported = deployments.find((d: any) => d.source === 'import');
    expect(table.stdout).toMatch(new RegExp(`^${imported.id} +superseded +import +${imported.commit.slice(0, 12)} `, 'm'));
    const rolled = await fnix(['rollback', imported.id]);
    expect(rolled.exitCode, rolled.stderr).toBe(0);
    expect(rolled.stdout).toMatch(new RegExp(`^${imported.id} \\(commit [0-9a-f]{12} ".*"\\) is live: ${FUNCTIONS.join(', ')}$`));
    expect((await fnix(['invoke', 'hello'])).stdout).toBe(GREETING);
    const json = JSON.parse((await fnix(['rollback', imported.id, '--json'])).stdout);
    expect(json).toMatchObject({ id: imported.id, status: 'active' });
    const unknown = await fnix(['rollback', 'd-nope']);
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr).toContain('DEPLOYMENT_NOT_FOUND');
  });
});

describe('installed', () => {
  it('runs as `npx fnix` in the clone, and as `fnix` after `npm install -g <clone>`', async () => {
    const npx = await execa('npx', ['fnix', 'ls', '--json'], { cwd: ROOT, env: envOf({ HOME: process.env['HOME'] }), extendEnv: false, reject: false });
    expect(npx.exitCode, npx.stderr).toBe(0);
    expect(JSON.parse(npx.stdout).functions.map((f: any) => f.name)).toContain('hello');
    const prefix = join(work, 'global');
    const installed = await execa('npm', ['install', '--global', '--prefix', prefix, '--no-audit', '--no-fund', ROOT], {
      env: { ...process.env, HOME: process.env['HOME'] },
      reject: false,
      all: true,
    });
    expect(installed.exitCode, installed.all).toBe(0);
    const global = await execa(join(prefix, 'bin/fnix'), ['invoke', 'hello'], {
      cwd: tmpdir(),
      env: envOf({}),
      extendEnv: false,
      stdin: 'ignore',
      reject: false,
    });
    expect(global.exitCode, global.stderr).toBe(0);
    expect(global.stdout).toMatch(/^H\w+, world! This is fnix\.$/);
  });
});

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}
