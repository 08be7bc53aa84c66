/**
 * @module
 * WebSocket sessions against a real gateway and real containers, driven by a ws client with the channel
 * protocol: stdio, binary exactness, exit statuses, tty mode, signals, disconnects (checked in the host's
 * process table), many sessions at once, malformed frames, timeouts, backpressure, limits and shutdown.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES_DIR, FIXTURES_DIR, functionsFrom, startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { scrape } from '../helpers/metrics.ts';
import { pidsWithEnv, waitUntil } from '../helpers/processes.ts';
import { openSession, refusedUpgrade } from '../helpers/session-client.ts';

const SESSION_SCRIPT = fileURLToPath(new URL('../../scripts/session.mjs', import.meta.url));
let gateway: TestGateway;
const open = (path: string) => openSession(gateway.url, path);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  // Room for 20 sessions at once, each holding its own container.
  gateway = await startTestGateway({ functionsDir: await functionsFrom(EXAMPLES_DIR, FIXTURES_DIR), maxContainers: 24 });
});
afterAll(async () => {
  await gateway?.close();
});

describe('sessions: stdio and status', () => {
  it('pipes stdin to stdout byte-exact, binary included, and ends with the exit status', async () => {
    const session = await open('/sessions/echo');
    const data = randomBytes(300_000); // several frames, every byte value
    session.send(0, data.subarray(0, 100_000));
    session.send(0, data.subarray(100_000));
    session.send(0); // end of input
    const { code, status } = await session.closed;
    expect(status).toEqual({ exitCode: 0 });
    expect(code).toBe(1000);
    expect(session.bytes(1).equals(data)).toBe(true);
    expect(session.invocationId).toMatch(/^[\w-]{21}$/);
  });

  it('carries stderr on channel 2 and a non-zero exit code in the status', async () => {
    const session = await open('/sessions/exit-3');
    const { code, status } = await session.closed;
    expect(status).toEqual({ exitCode: 3 });
    expect(code).toBe(1000);
    expect(session.text(2)).toContain('something broke');
  });

  it('gives the command the CGI environment, the query, and FNIX_SESSION=1', async () => {
    const session = await open('/sessions/env-dump?a=1&b=two');
    expect((await session.closed).status).toEqual({ exitCode: 0 });
    const env = session.text(1);
    expect(env).toContain('QUERY_STRING=a=1&b=two\n');
    expect(env).toContain('FNIX_SESSION=1\n');
    expect(env).toContain('REQUEST_METHOD=GET\n');
    expect(env).toContain(`FNIX_INVOCATION_ID=${session.invocationId}\n`);
    expect(env).toContain('GREETING=hi there\n');
    expect(env).not.toContain('TERM=');
  });

  it('counts sessions in /metrics: open while they run, by kind and outcome when they end', async () => {
    const session = await open('/sessions/forever');
    await session.waitFor('started', 2);
    expect((await scrape(gateway.url)).value('fnix_sessions_open')).toBe(1);
    session.ws.close();
    await session.closed;
    await waitUntil(async () => (await scrape(gateway.url)).value('fnix_sessions_open') === 0, 2000, 'fnix_sessions_open to be 0');
    const metrics = await scrape(gateway.url);
    expect(metrics.value('fnix_invocations_total', { function: 'forever', kind: 'session', outcome: 'INVOCATION_ABORTED' })).toBe(1);
    // Sessions that wrote to stdout (echo, above) count as sessions, and stay out of time to first byte.
    expect(metrics.value('fnix_invocations_total', { function: 'echo', kind: 'session', outcome: 'OK' })).toBeGreaterThanOrEqual(1);
    for (const start of ['warm', 'cold']) {
      expect(metrics.value('fnix_time_to_first_byte_seconds_count', { function: 'echo', start })).toBe(0);
    }
  });
});

describe('sessions: the command-line client (scripts/session.mjs)', () => {
  const client = (fn: string, input: string) => execa('node', [SESSION_SCRIPT, fn], { input, reject: false, env: { FNIX_URL: gateway.url } });

  it('pipes its stdin to the function and the output back, and exits with the exit code', async () => {
    const echoed = await client('echo', 'through the channel protocol\n');
    expect(echoed.stdout).toBe('through the channel protocol');
    expect(echoed.exitCode).toBe(0);
    const failed = await client('exit-3', '');
    expect(failed.stderr).toContain('something broke');
    expect(failed.exitCode).toBe(3);
  });

  it('docs/sessions.md: the short client example works as written', async () => {
    const doc = await readFile(fileURLToPath(new URL('../../docs/sessions.md', import.meta.url)), 'utf8');
    const example = /A client in a dozen lines[\s\S]*?```js\n([\s\S]*?)```/.exec(doc)?.[1];
    expect(example).toBeDefined();
    const code = example!.replace('ws://127.0.0.1:8080', gateway.url.replace('http', 'ws'));
    const run = await execa('node', ['--input-type=module', '-e', code], { cwd: fileURLToPath(new URL('../..', import.meta.url)) });
    expect(run.stdout).toContain('hello over the channel protocol\nstatus { exitCode: 0 }');
  });

  it('says why when the session is refused', async () => {
    const refused = await client('nope', '');
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain('404');
    expect(refused.stderr).toContain('FUNCTION_NOT_FOUND');
  });
});

describe('sessions: refused before the upgrade', () => {
  it('answers an unknown function with the JSON 404', async () => {
    const { status, body } = await refusedUpgrade(gateway.url, '/sessions/nope');
    expect(status).toBe(404);
    expect(body.error.code).toBe('FUNCTION_NOT_FOUND');
  });

  it('refuses a page from another origin with 403 ORIGIN_NOT_ALLOWED, and accepts its own', async () => {
    for (const origin of ['http://evil.example', 'null', 'http://127.0.0.1:1']) {
      const { status, body } = await refusedUpgrade(gateway.url, '/sessions/shell-test', { origin });
      expect(status).toBe(403);
      expect(body.error.code).toBe('ORIGIN_NOT_ALLOWED');
    }
    const own = await openSession(gateway.url, '/sessions/exit-3', { origin: gateway.url });
    expect((await own.closed).status).toEqual({ exitCode: 3 });
  });

  it('refuses an upgrade that is not a WebSocket handshake, before finding a container', async () => {
    const { status, body } = await refusedUpgrade(gateway.url, '/sessions/forever', { upgrade: 'h2c' });
    expect(status).toBe(400);
    expect(body.error.code).toBe('SESSION_PROTOCOL_ERROR');
    expect(body.error.message).toContain('not a WebSocket handshake');
    const posted = await refusedUpgrade(gateway.url, '/sessions/forever', {}, 'POST');
    expect(posted.status).toBe(400);
    expect(posted.body.error.code).toBe('SESSION_PROTOCOL_ERROR');
  });

  it('answers an upgrade anywhere else with ROUTE_NOT_FOUND, naming where sessions are', async () => {
    for (const path of ['/fn/echo', '/healthz', '/sessions/echo/more']) {
      const { status, headers, body } = await refusedUpgrade(gateway.url, path);
      expect(status, path).toBe(404);
      // A function's own URL says why it takes none: it is not a serve function (docs/serve.md).
      const message = path.startsWith('/fn/')
        ? "function 'echo' takes no WebSocket at /fn/echo: it is not a serve function; its stdio session is at /sessions/echo"
        : `no WebSocket route for ${path}; sessions are at /sessions/<name>`;
      expect(body.error, path).toEqual({ code: 'ROUTE_NOT_FOUND', message });
      expect(headers['x-fnix-invocation-id'], path).toBeUndefined();
    }
    // An empty name is a function that is not there, as any other.
    expect((await refusedUpgrade(gateway.url, '/sessions/')).body.error.code).toBe('FUNCTION_NOT_FOUND');
  });

  it('answers a bad terminal size with the JSON 400', async () => {
    const { status, body } = await refusedUpgrade(gateway.url, '/sessions/shell-test?tty=1&cols=0');
    expect(status).toBe(400);
    expect(body.error.code).toBe('SESSION_PROTOCOL_ERROR');
    expect(body.error.message).toContain('cols');
  });
});

describe('sessions: malformed frames', () => {
  it.each([
    ['a text frame', (s: Awaited<ReturnType<typeof open>>) => s.ws.send('hello'), 1003],
    ['an unknown channel', (s: Awaited<ReturnType<typeof open>>) => s.send(9, 'x'), 1008],
    ['a server-only channel', (s: Awaited<ReturnType<typeof open>>) => s.send(1, 'x'), 1008],
    ['a resize that is not JSON', (s: Awaited<ReturnType<typeof open>>) => s.send(4, 'wide'), 1008],
    ['a signal not on the allowlist', (s: Awaited<ReturnType<typeof open>>) => s.send(5, '{"signal":"SIGSTOP"}'), 1008],
  ])('refuses %s with an error status and close %d, and the command goes', async (_name, misbehave, closeCode) => {
    const session = await open('/sessions/forever');
    await session.waitFor('started', 2);
    misbehave(session);
    const { code, status } = await session.closed;
    expect(code).toBe(closeCode);
    expect(status?.error?.code).toBe('SESSION_PROTOCOL_ERROR');
    await waitUntil(async () => (await pidsWithEnv('FNIX_INVOCATION_ID', session.invocationId)).length === 0, 1000, 'the command to be gone');
  });

  it('closes with 1009 on a frame over the size limit (1 MiB), and the command goes', async () => {
    const session = await open('/sessions/forever');
    await session.waitFor('started', 2);
    session.send(0, Buffer.alloc(1024 * 1024 + 1));
    const { code } = await session.closed;
    expect(code).toBe(1009);
    await waitUntil(async () => (await pidsWithEnv('FNIX_INVOCATION_ID', session.invocationId)).length === 0, 1000, 'the command to be gone');
  });
});

describe('sessions: tty mode', () => {
  it('runs on a terminal: isatty, the size from the query, resize, stderr merged into channel 1', async () => {
    const session = await open('/sessions/shell-test?tty=1&cols=100&rows=30');
    await session.waitFor('$ ');
    session.send(0, 'stty size; [ -t 0 ] && [ -t 1 ] && echo is-a-tty; echo to-stderr >&2; echo TERM=$TERM\n');
    await session.waitFor('TERM=xterm-256color');
    session.send(4, JSON.stringify({ cols: 132, rows: 50 }));
    session.send(0, 'stty size; exit 7\n');
    const { status } = await session.closed;
    expect(status).toEqual({ exitCode: 7 });
    const out = session.text(1);
    expect(out).toContain('30 100');
    expect(out).toContain('is-a-tty');
    expect(out).toContain('to-stderr');
    expect(out).toContain('50 132');
    expect(session.bytes(2).length).toBe(0);
  });

  it('interrupts the foreground process on Ctrl-C (0x03) and keeps the shell', async () => {
    const session = await open('/sessions/shell-test?tty=1');
    await session.waitFor('$ ');
    session.send(0, 'sleep 30\n');
    // The shell and sleep, in the foreground: then Ctrl-C is for sleep.
    await waitUntil(async () => (await pidsWithEnv('FNIX_INVOCATION_ID', session.invocationId)).length >= 2, 5000, 'sleep to start');
    const sent = performance.now();
    session.send(0, Buffer.of(0x03));
    session.send(0, 'echo after-$((40 + 2))\n');
    await session.waitFor('after-42');
    expect(performance.now() - sent).toBeLessThan(5000);
    expect(session.text(1)).toContain('^C');
    session.send(0, 'exit\n');
    expect((await session.closed).status).toEqual({ exitCode: 0 });
  });

  it('sends end of input (Ctrl-D) on an empty stdin frame', async () => {
    const session = await open('/sessions/shell-test?tty=1');
    await session.waitFor('$ '); // the prompt: the shell reads its terminal (input sent earlier may be flushed)
    session.send(0);
    expect((await session.closed).status).toEqual({ exitCode: 0 });
  });
});

describe('sessions: signals and disconnects', () => {
  it('delivers an allowed signal to the command (channel 5), and reports it in the status', async () => {
    const session = await open('/sessions/forever');
    await session.waitFor('started', 2);
    session.send(5, JSON.stringify({ signal: 'SIGTERM' }));
    expect((await session.closed).status).toEqual({ signal: 'SIGTERM' });
  });

  it('delivers SIGINT to a command that traps it', async () => {
    const session = await open('/sessions/shell-test');
    session.send(0, "trap 'echo got-int; exit 4' INT; echo ready; while :; do sleep 0.05; done\n");
    await session.waitFor('ready');
    session.send(5, JSON.stringify({ signal: 'SIGINT' }));
    await session.waitFor('got-int');
    expect((await session.closed).status).toEqual({ exitCode: 4 });
  });

  it('kills the process tree within 1 s when the client disconnects', async () => {
    for (const end of ['close', 'terminate'] as const) {
      const session = await open('/sessions/shell-test');
      session.send(0, 'busybox sleep 3600 & busybox sleep 3600 & echo children-started\n');
      await session.waitFor('children-started');
      const pids = await pidsWithEnv('FNIX_INVOCATION_ID', session.invocationId);
      expect(pids.length).toBeGreaterThanOrEqual(3); // the shell and its two children
      session.ws[end](); // a clean close, then an abrupt disconnect
      const elapsed = await waitUntil(
        async () => (await pidsWithEnv('FNIX_INVOCATION_ID', session.invocationId)).length === 0,
        1000,
        `the session's processes to be gone after ${end}`,
      );
      expect(elapsed).toBeLessThan(1000);
    }
  });
});

describe('sessions: clients that go away at awkward moments', () => {
  const gone = (session: { invocationId: string }, what: string) =>
    waitUntil(async () => (await pidsWithEnv('FNIX_INVOCATION_ID', session.invocationId)).length === 0, 1000, what);

  it('notices a disconnect while stdin is full (the socket is not being read)', async () => {
    const session = await open('/sessions/forever'); // never reads its stdin
    await session.waitFor('started', 2);
    for (let i = 0; i < 32; i++) session.send(0, Buffer.alloc(64 * 1024)); // 2 MiB, over the 1 MiB queue
    await sleep(300);
    session.ws.terminate();
    await gone(session, 'the command to be gone after a disconnect with stdin full');
  });

  it('kills the command at once on a frame over the limit, even if the client never answers the close', async () => {
    const session = await open('/sessions/forever');
    await session.waitFor('started', 2);
    session.send(0, Buffer.alloc(1024 * 1024 + 1));
    session.ws.pause(); // it never reads the 1009
    await gone(session, 'the command to be gone after a 1009');
    session.ws.terminate();
  });

  it('cancels a session whose client leaves before the upgrade completes', async () => {
    const before = (await pidsWithEnv('FNIX_FUNCTION', 'forever')).length;
    const aborted = async () =>
      (await scrape(gateway.url)).value('fnix_invocations_total', { function: 'forever', kind: 'session', outcome: 'INVOCATION_ABORTED' });
    const abortedBefore = await aborted();
    const socket = connect(gateway.server.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.end(
      'GET /sessions/forever HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    ); // and a FIN right behind it
    // The gateway saw it, and gave it up: counted as aborted, with no command of it left.
    await waitUntil(async () => (await aborted()) === abortedBefore + 1, 5000, 'the session to be counted as aborted');
    await waitUntil(async () => (await pidsWithEnv('FNIX_FUNCTION', 'forever')).length === before, 2000, 'no command of it');
    socket.destroy();
  });
});

describe('sessions: many at once', () => {
  it('runs 20 sessions at once, each with its own stdio', async () => {
    const sessions = await Promise.all(Array.from({ length: 20 }, () => open('/sessions/echo')));
    // All 20 are open, each running in its own container, before any is given input. (The 101 comes once
    // the command is handed to the agent, which forks it a moment later.)
    await waitUntil(
      async () => (await Promise.all(sessions.map((s) => pidsWithEnv('FNIX_INVOCATION_ID', s.invocationId)))).every((pids) => pids.length > 0),
      5000,
      'all 20 commands to run',
    );
    const inputs = sessions.map((_, i) => randomBytes(10_000 + i));
    sessions.forEach((s, i) => {
      s.send(0, inputs[i]);
      s.send(0);
    });
    const results = await Promise.all(sessions.map((s) => s.closed));
    expect(results.map((r) => r.status)).toEqual(Array(20).fill({ exitCode: 0 }));
    for (const [i, s] of sessions.entries()) expect(s.bytes(1).equals(inputs[i]!)).toBe(true);
  });
});

describe('sessions: timeouts', () => {
  it('ends a session after idleTimeoutMs without traffic, with SESSION_IDLE', async () => {
    const session = await open('/sessions/session-idle'); // idleTimeoutMs: 1000
    const opened = performance.now();
    const { code, status } = await session.closed;
    const elapsed = performance.now() - opened;
    expect(status?.error?.code).toBe('SESSION_IDLE');
    expect(code).toBe(1000);
    expect(elapsed).toBeGreaterThanOrEqual(950);
    expect(elapsed).toBeLessThan(5000);
  });

  it('counts traffic either way as activity', async () => {
    const session = await open('/sessions/session-idle');
    for (let i = 0; i < 4; i++) {
      await sleep(400);
      session.send(0, `line ${i}\n`); // echoed back by cat
    }
    await session.waitFor('line 3');
    expect(session.ws.readyState).toBe(session.ws.OPEN); // 1.6 s in, with a 1 s idle limit
    expect((await session.closed).status?.error?.code).toBe('SESSION_IDLE');
  });

  it('ends a session at sessionTimeoutMs even while it is busy, with SESSION_TIMEOUT', async () => {
    const session = await open('/sessions/session-ticker'); // sessionTimeoutMs: 1500, prints every 200 ms
    const { code, status } = await session.closed;
    expect(status?.error?.code).toBe('SESSION_TIMEOUT');
    expect(status?.error?.message).toContain('1500');
    expect(code).toBe(1000);
    expect(session.text(1)).toContain('tick');
  });
});

describe('sessions: backpressure', () => {
  it('pauses the command while the client reads nothing, and then delivers every byte', async () => {
    const session = await open('/sessions/session-flood'); // dd: 50 MiB of zeros
    session.ws.pause(); // the client stops reading its socket
    await sleep(1000);
    const [pid] = await pidsWithEnv('FNIX_INVOCATION_ID', session.invocationId);
    expect(pid).toBeDefined(); // unpaused, dd writes 50 MiB in well under a second
    const written = async () => Number(/wchar: (\d+)/.exec(await readFile(`/proc/${pid}/io`, 'utf8'))![1]);
    // Stalled: what it wrote sits in the socket buffers (the kernel's, 1 MiB of the gateway's, the agent's).
    let stalledAt = -1;
    await waitUntil(
      async () => {
        const previous = stalledAt;
        stalledAt = await written();
        await sleep(500);
        return (await written()) === stalledAt && stalledAt === previous;
      },
      10_000,
      'dd to stall',
    );
    expect(stalledAt).toBeLessThan(25 * 1024 * 1024);
    console.log(`backpressure: dd stalled after ${(stalledAt / 1048576).toFixed(1)} MiB of 50 MiB`);
    session.ws.resume();
    const { status } = await session.closed;
    expect(status).toEqual({ exitCode: 0 });
    const out = session.bytes(1);
    expect(out.length).toBe(50 * 1024 * 1024);
    expect(out.every((byte) => byte === 0)).toBe(true);
  });
});

describe('sessions: a command that reads slowly', () => {
  it('holds stdin back while the command does not read, and loses not a byte', async () => {
    const session = await open('/sessions/slow-reader'); // reads nothing for a second, then cat
    const data = randomBytes(4 * 1024 * 1024);
    for (let offset = 0; offset < data.length; offset += 64 * 1024) session.send(0, data.subarray(offset, offset + 64 * 1024));
    session.send(0);
    const { status } = await session.closed;
    expect(status).toEqual({ exitCode: 0 });
    expect(session.bytes(1).equals(data)).toBe(true);
  });
});

describe('sessions: a client that reads nothing', () => {
  it('does not hold up shutdown: its session ends within the close grace, and the command goes', async () => {
    const session = await open('/sessions/flood'); // cat /dev/zero, endless
    session.ws.pause();
    await sleep(500);
    const began = performance.now();
    await gateway.sessions.closeAll();
    const elapsed = performance.now() - began;
    expect(elapsed).toBeLessThan(5000);
    // A paused client learns of the end only when it reads again: the status and the close frame if it
    // reads within the close grace, a dropped socket after it.
    session.ws.resume();
    expect([1001, 1006]).toContain((await session.closed).code);
    await waitUntil(async () => (await pidsWithEnv('FNIX_INVOCATION_ID', session.invocationId)).length === 0, 1000, 'the command to be gone');
  });
});

describe('sessions: limits and shutdown', () => {
  let limited: TestGateway;
  beforeAll(async () => {
    limited = await startTestGateway({
      functionsDir: await functionsFrom(EXAMPLES_DIR, FIXTURES_DIR),
      sessionHeartbeatMs: 500,
      poolSize: 1,
      maxOutput: 1024 * 1024,
      maxSessions: 2,
    });
  });
  afterAll(async () => {
    await limited?.close();
  });

  it('caps a session output at FNIX_MAX_OUTPUT, with OUTPUT_LIMIT', async () => {
    const session = await openSession(limited.url, '/sessions/session-flood');
    const { status } = await session.closed;
    expect(status?.error?.code).toBe('OUTPUT_LIMIT');
    expect(session.bytes(1).length).toBe(1024 * 1024); // up to the limit, exactly
  });

  it('drops a client that stops answering pings, and the command goes', async () => {
    const silent = await openSession(limited.url, '/sessions/forever', { autoPong: false });
    await silent.waitFor('started', 2);
    const began = performance.now();
    await silent.closed;
    expect(performance.now() - began).toBeLessThan(3000); // a ping every 500 ms, and none answered
    await waitUntil(async () => (await pidsWithEnv('FNIX_INVOCATION_ID', silent.invocationId)).length === 0, 1000, 'the command to be gone');
    // One that answers stays.
    const lively = await openSession(limited.url, '/sessions/forever');
    await sleep(1500);
    expect(lively.ws.readyState).toBe(lively.ws.OPEN);
    lively.ws.close();
    await lively.closed;
  });

  it('refuses a session beyond FNIX_MAX_SESSIONS with 503 NO_CAPACITY and Retry-After', async () => {
    // The sessions of the tests above give their slots back once their commands are gone.
    await waitUntil(async () => (await scrape(limited.url)).value('fnix_sessions_open') === 0, 5000, 'no session to be open');
    const open2 = await Promise.all([openSession(limited.url, '/sessions/forever'), openSession(limited.url, '/sessions/forever')]);
    const { status, headers, body } = await refusedUpgrade(limited.url, '/sessions/forever');
    expect(status).toBe(503);
    expect(headers['retry-after']).toBe('1');
    expect(body.error.code).toBe('NO_CAPACITY');
    expect(body.error.message).toContain('FNIX_MAX_SESSIONS');
    for (const s of open2) s.ws.close();
    await Promise.all(open2.map((s) => s.closed));
    // The slots come back.
    await waitUntil(
      async () => {
        const s = await openSession(limited.url, '/sessions/exit-3').catch(() => undefined);
        return s !== undefined && (await s.closed).status?.exitCode === 3;
      },
      5000,
      'a session slot',
    );
  });

  it('ends open sessions at shutdown with SHUTTING_DOWN and close 1001', async () => {
    const session = await openSession(limited.url, '/sessions/forever');
    await session.waitFor('started', 2);
    await limited.sessions.closeAll();
    const { code, status } = await session.closed;
    expect(code).toBe(1001);
    expect(status?.error?.code).toBe('SHUTTING_DOWN');
    await waitUntil(async () => (await pidsWithEnv('FNIX_INVOCATION_ID', session.invocationId)).length === 0, 1000, 'the command to be gone');
  });
});
