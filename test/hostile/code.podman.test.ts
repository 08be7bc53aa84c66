/**
 * @module
 * Hostile function code against real containers: a fork bomb, a memory bomb, a CPU spin, floods of
 * output, children that try to outlive their invocation, writes where none belong, and probes of what a
 * function can see. Each runs with `hello` invoked alongside, whose latency is reported.
 */
import { connect } from 'node:net';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { prepareHost } from '../../bench/host.ts';
import { execa } from 'execa';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXAMPLES_DIR, functionsFrom, startTestGateway, TEST_TOKEN, type TestGateway } from '../helpers/gateway.ts';
import { scrape } from '../helpers/metrics.ts';
import { containerRunning, pidsWithEnv, waitUntil } from '../helpers/processes.ts';
import { alongside, HOSTILE_DIR, report } from './helpers.ts';

let gateway: TestGateway;
let functionsDir: string;
// Far more than the memory growth the flood tests allow (64 MiB): a gateway that held the output would fail them.
const MAX_OUTPUT = 160 * 1024 * 1024;

beforeAll(async () => {
  // A secret of the gateway's, which no function may see.
  process.env['FNIX_TOKEN'] = TEST_TOKEN;
  functionsDir = await functionsFrom(EXAMPLES_DIR, HOSTILE_DIR);
  // The system-call probes are C, compiled here: a static binary needs nothing from the store.
  for (const [name, source] of [
    ['syscalls', 'syscalls'],
    ['agent-limits', 'limits'],
  ] as const) {
    const probe = join(functionsDir, name);
    await execa('gcc', ['-static', '-O2', '-Wall', '-Wextra', '-Werror', '-o', join(probe, source), join(probe, `${source}.c`)]);
  }
  gateway = await startTestGateway({ functionsDir, maxOutput: MAX_OUTPUT, poolSize: 2 });
});
afterAll(async () => {
  delete process.env['FNIX_TOKEN'];
  await gateway?.close();
});

/** Sends `request` on a fresh connection; resolves with every byte the server sent until it closed. */
function rawRequest(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(request));
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString('latin1')));
    socket.on('close', () => resolve(answer));
    socket.on('error', reject);
  });
}

async function invoke(name: string) {
  const response = await fetch(`${gateway.url}/fn/${name}`);
  const id = response.headers.get('x-fnix-invocation-id')!;
  return { response, id };
}

/** The processes in container `id`'s pids cgroup: the agent alone once an invocation is over. */
async function processesIn(container: string): Promise<number[]> {
  const text = await readFile(`/sys/fs/cgroup/pids/libpod_parent/libpod-${container}/cgroup.procs`, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map(Number);
}

describe('hostile function code', () => {
  // Each attack starts on a settled pool: nothing busy, nothing still starting (a retired container's
  // replacement, say), so that its timings are the attack's own.
  beforeEach(async () => {
    await waitUntil(
      () => {
        const stats = gateway.runtime.pool.stats();
        return stats.busy === 0 && stats.starting === 0;
      },
      15_000,
      'the pool to settle',
    );
  });

  it('contains a fork bomb with the pids limit, ends it with a clear code, and never reuses its container', async () => {
    const hello = await alongside(gateway.url);
    const began = performance.now();
    const pending = fetch(`${gateway.url}/fn/fork-bomb`);
    let container: string | undefined;
    // Find the bomb's container while it runs.
    const deadline = performance.now() + 2500;
    while (!container && performance.now() < deadline) container = await containerRunning('fork-bomb');
    const response = await pending;
    const elapsed = performance.now() - began;
    const body = (await response.json()) as any;
    const figures = await hello.stop();
    // Its main process waits, and the timeout (3 s) ends it: 504. Or, on a loaded machine, the bomb
    // takes the last pid before the main shell forks its `sleep`, and the shell fails: 502. Either is
    // the clear code of a contained bomb; what must hold is that the limit was reached and said so.
    expect([
      [504, 'FUNCTION_TIMEOUT'],
      [502, 'FUNCTION_FAILED'],
    ]).toContainEqual([response.status, body.error.code]);
    expect(body.error.pidsLimitHit).toBe(true);
    expect(body.error.message).toContain('reached the limit of 256 processes');
    expect(figures.failures).toBe(0);
    expect(container).toBeDefined();
    await waitUntil(
      async () => (await execa('podman', ['ps', '-aq', '--filter', `id=${container}`])).stdout.trim() === '',
      5000,
      'the bomb container to be removed',
    );
    expect(await pidsWithEnv('FNIX_FUNCTION', 'fork-bomb')).toEqual([]);
    await report('fork bomb', { status: response.status, code: body.error.code, endedAfterMs: Math.round(elapsed), hello: figures });
  });

  it('kills a memory bomb at its memoryMb and reports FUNCTION_OOM', async () => {
    const hello = await alongside(gateway.url);
    const began = performance.now();
    const pending = invoke('memory-bomb');
    let container: string | undefined;
    const deadline = performance.now() + 2500;
    while (!container && performance.now() < deadline) container = await containerRunning('memory-bomb');
    const { response } = await pending;
    const body = (await response.json()) as any;
    const figures = await hello.stop();
    expect(response.status).toBe(502);
    expect(body.error.code).toBe('FUNCTION_OOM');
    expect(body.error.message).toContain('memoryMb of 64 MiB');
    expect(figures.failures).toBe(0);
    // Its container is not reused: it is removed.
    expect(container).toBeDefined();
    await waitUntil(
      async () => (await execa('podman', ['ps', '-aq', '--filter', `id=${container}`])).stdout.trim() === '',
      5000,
      'the bomb container to be removed',
    );
    await report('memory bomb', { status: response.status, code: body.error.code, endedAfterMs: Math.round(performance.now() - began), hello: figures });
  });

  it('kills a CPU spin at timeoutMs with 504, and leaves nothing of it running', async () => {
    const hello = await alongside(gateway.url);
    const began = performance.now();
    const { response, id } = await invoke('cpu-spin');
    const elapsed = performance.now() - began;
    const body = (await response.json()) as any;
    const figures = await hello.stop();
    expect(response.status).toBe(504);
    expect(body.error.code).toBe('FUNCTION_TIMEOUT');
    expect(elapsed).toBeGreaterThanOrEqual(950);
    expect(elapsed).toBeLessThan(3000);
    expect(await pidsWithEnv('FNIX_INVOCATION_ID', id)).toEqual([]);
    expect(figures.failures).toBe(0);
    await report('CPU spin past timeoutMs', { status: response.status, endedAfterMs: Math.round(elapsed), hello: figures });
  });

  it.each(['stdout-flood', 'stderr-flood'])('caps %s at FNIX_MAX_OUTPUT, kills it, and keeps the gateway memory flat', async (name) => {
    const hello = await alongside(gateway.url);
    // A full GC every 50 ms, so that the peak is what the gateway holds, not garbage that V8 collects
    // only once tens of MiB of it have piled up.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    gc();
    const rssBefore = process.memoryUsage().rss;
    let peak = rssBefore;
    const sampler = setInterval(() => {
      gc();
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 50);
    const began = performance.now();
    // The client reads in a process of its own, so that the memory measured here is the gateway's (and
    // vitest's), not that of a client reading 160 MiB.
    const client = await execa('node', [
      '--input-type=module',
      '-e',
      `
      const response = await fetch(${JSON.stringify(`${gateway.url}/fn/${name}`)});
      let received = 0;
      let aborted = false;
      try {
        for await (const chunk of response.body) received += chunk.length;
      } catch {
        aborted = true; // the transfer is cut: the client sees it was not a clean end
      }
      console.log(JSON.stringify({ id: response.headers.get('x-fnix-invocation-id'), received, aborted }));
    `,
    ]);
    const { id, received, aborted } = JSON.parse(client.stdout) as { id: string; received: number; aborted: boolean };
    clearInterval(sampler);
    const figures = await hello.stop();
    expect(aborted).toBe(true);
    expect(received).toBeLessThanOrEqual(MAX_OUTPUT);
    await waitUntil(async () => (await pidsWithEnv('FNIX_INVOCATION_ID', id)).length === 0, 2000, 'the flood to be killed');
    expect(peak - rssBefore).toBeLessThan(64 * 1024 * 1024);
    expect(figures.failures).toBe(0);
    await report(`${name === 'stdout-flood' ? 'endless stdout' : 'huge stderr'}`, {
      receivedBytes: received,
      capBytes: MAX_OUTPUT,
      endedAfterMs: Math.round(performance.now() - began),
      rssGrowthMiB: Math.round((peak - rssBefore) / 1048576),
      peakRssMiB: Math.round(peak / 1048576),
      hello: figures,
    });
  });

  it('lets no child outlive its invocation: background, setsid, double fork, nohup', async () => {
    const hello = await alongside(gateway.url);
    const { response } = await invoke('escape-children');
    const text = await response.text();
    expect(text).toMatch(/^libpod-[0-9a-f]{64}\nstarted\n$/);
    const container = text.slice('libpod-'.length, 'libpod-'.length + 64);
    // Counted in the container's cgroup, which no child can leave (an `env -i` child carries no marker).
    const elapsed = await waitUntil(async () => (await processesIn(container)).length === 1, 1000, 'every child to be gone, the agent alone');
    const figures = await hello.stop();
    expect(figures.failures).toBe(0);
    await report('children that outlive the main process', { goneAfterMs: Math.round(elapsed), hello: figures });
  });

  it('confines writes to /tmp, keeps the store intact, and shows no invocation what an earlier one left', async () => {
    const hello = await alongside(gateway.url);
    const first = await (await invoke('writer')).response.text();
    const second = await (await invoke('writer')).response.text();
    const figures = await hello.stop();
    // The same warm container, reused: what the first left is what the second must not find.
    const containerOf = (output: string) => /^container: (libpod-[0-9a-f]{64})$/m.exec(output)?.[1];
    expect(containerOf(first)).toBeDefined();
    expect(containerOf(second)).toBe(containerOf(first));
    for (const output of [first, second]) {
      for (const path of ['/nix/store', '/fn', '', '/etc', '/usr', '/run', '/dev']) expect(output).toContain(`${path}/fnix-was-here refused`);
      expect(output).toContain('/tmp/fnix-was-here written');
      expect(output).toContain('store file refused');
      expect(output).toContain('store file kept');
      expect(output).not.toContain('left:');
      expect(output).not.toContain('left in shm:');
    }
    const verify = await execa('nix-store', ['--verify', '--check-contents'], { all: true });
    expect(verify.exitCode).toBe(0);
    expect(verify.all).not.toMatch(/modified|corrupt|error/i);
    expect(figures.failures).toBe(0);
    await report('writes outside /tmp', { refused: 'all', store: 'nix-store --verify --check-contents clean', leftovers: 'none', hello: figures });
  });

  it('shows a function no network but loopback, no host path, no other process, and no secret', async () => {
    const hello = await alongside(gateway.url);
    const output = await (await invoke('probe')).response.text();
    const figures = await hello.stop();
    expect(figures.failures).toBe(0);
    const section = (name: string) => output.split(`== ${name}\n`)[1]!.split('\n== ')[0]!;
    expect(section('interfaces').trim().split('\n')).toEqual(['lo']);
    // fnix's own root (runtime/container/rootfs.ts): nothing of the host's.
    expect(section('root').trim().split('\n').sort()).toEqual(['dev', 'etc', 'fn', 'nix', 'proc', 'run', 'sbin', 'sys', 'tmp', 'usr']);
    // What is mounted where: the store, /fn, the container's own root and kernel filesystems, nothing else.
    const mountPoints = section('mounts')
      .trim()
      .split('\n')
      .map((line) => line.split(' ')[1]!);
    // /run/secrets: the container's own tmpfs for the secrets a function declares (docs/secrets.md), empty here.
    const allowed = ['/sys', '/tmp', '/fn', '/proc', '/dev', '/run/.containerenv', '/run/fnix', '/run/secrets', '/etc/', '/nix/store'];
    for (const point of mountPoints) expect(point === '/' || allowed.some((prefix) => point.startsWith(prefix)), point).toBe(true);
    expect(output).not.toContain(TEST_TOKEN);
    expect(section('env')).not.toMatch(/^FNIX_TOKEN=/m);
    // Its own processes only: the agent (PID 1, whose cmdline it may read) and its own commands.
    const processes = section('processes').trim().split('\n').filter(Boolean);
    const names = processes.map((line) => line.split(' ')[0]!.split('/').pop()!);
    for (const name of names) expect(['fnix-agent', 'sh', 'busybox', 'probe.sh', 'ls', 'cat', 'grep', 'tr'], name).toContain(name);
    await report('what a function can see', {
      interfaces: ['lo'],
      root: section('root').trim().split('\n'),
      mountPoints: mountPoints.length,
      secrets: 'none',
      hello: figures,
    });
  });

  it('refuses the system calls untrusted code has no use for: namespaces, mounts, the kernel keyring', async () => {
    const hello = await alongside(gateway.url);
    const output = await (await invoke('syscalls')).response.text();
    const figures = await hello.stop();
    expect(figures.failures).toBe(0);
    const answers = Object.fromEntries(
      output
        .trim()
        .split('\n')
        .map((line) => line.split(': ') as [string, string]),
    );
    const EPERM = 'Operation not permitted';
    const ENOSYS = 'Function not implemented';
    expect(answers).toEqual({
      // What every program needs: fork, and clone without namespace flags (threads).
      fork: 'allowed',
      'thread-like clone': 'allowed',
      'clone(CLONE_NEWUSER)': EPERM,
      'unshare(CLONE_NEWUSER)': EPERM,
      // clone3 hides its flags from seccomp behind a pointer: ENOSYS, so that libc falls back to clone.
      'clone3(CLONE_NEWUSER)': ENOSYS,
      'clone(CLONE_NEWNS)': EPERM,
      'clone(CLONE_NEWNET)': EPERM,
      'unshare(CLONE_NEWNS)': EPERM,
      setns: EPERM,
      mount: EPERM,
      umount2: EPERM,
      fsopen: EPERM,
      keyctl: EPERM,
      add_key: EPERM,
      syslog: EPERM,
      bpf: EPERM,
      perf_event_open: EPERM,
      userfaultfd: EPERM,
      io_uring_setup: ENOSYS,
    });
    // The same probe, confined the same way but under Podman's own seccomp profile: what fnix's profile
    // is there for. In a user namespace of its own, a process holds every capability over namespaces it
    // makes, and mounts.
    const work = await mkdtemp(join(tmpdir(), 'fnix-seccomp-'));
    try {
      const host = await prepareHost(work);
      const podmanDefault = host.containerArgs.map((arg) => (arg.startsWith('seccomp=') ? 'seccomp=/usr/share/containers/seccomp.json' : arg));
      const probeDir = join(work, 'probe');
      await mkdir(probeDir, { recursive: true });
      await copyFile(join(functionsDir, 'syscalls', 'syscalls'), join(probeDir, 'syscalls'));
      const { stdout } = await host.podman.exec(['run', '--rm', ...podmanDefault, '-v', `${probeDir}:/p:ro`, '--rootfs', host.rootfs, '/p/syscalls']);
      const underPodman = Object.fromEntries(
        String(stdout)
          .trim()
          .split('\n')
          .map((line) => line.split(': ') as [string, string]),
      );
      const onlyFnixRefuses = Object.keys(answers).filter((name) => underPodman[name] === 'allowed' && answers[name] !== 'allowed');
      expect(onlyFnixRefuses).toEqual(expect.arrayContaining(['clone(CLONE_NEWUSER)', 'unshare(CLONE_NEWUSER)', 'clone3(CLONE_NEWUSER)', 'mount', 'keyctl']));
      await report('kernel surface', {
        refused: Object.keys(answers).filter((name) => answers[name] !== 'allowed'),
        allowedByPodmansProfile: onlyFnixRefuses,
        hello: figures,
      });
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });

  it('keeps what a function changes of its agent (limits, priority, scheduling, CPUs) from the invocations after it', async () => {
    const lines = async (mode: string) => {
      const response = await fetch(`${gateway.url}/fn/agent-limits?${mode}`);
      expect(response.status).toBe(200);
      return Object.fromEntries(
        (await response.text())
          .trim()
          .split('\n')
          .map((line) => [line.slice(0, line.lastIndexOf(': ')), line.slice(line.lastIndexOf(': ') + 2)]),
      );
    };
    const container = async () => (await lines('report'))['container'];
    // Each change alone, then what the next invocation sees. The kernel allows them all (same uid).
    const changes = ['nofile', 'nproc', 'nice', 'pgrp-nice', 'user-nice', 'idle', 'ioprio', 'user-ioprio', 'affinity'];
    const baseline = await lines('report');
    const seen: Record<string, { answer: string; sameContainer: boolean }> = {};
    for (const change of changes) {
      const before = await lines('report');
      const attack = await lines(`attack=${change}`);
      const after = await lines('report');
      const { container: beforeContainer } = before;
      const { container: afterContainer, ...afterLimits } = after;
      expect(Object.values(attack), change).toEqual(['allowed']);
      // Never inherited: the next invocation sees the agent as it started.
      expect(afterLimits, change).toEqual(Object.fromEntries(Object.entries(baseline).filter(([key]) => key !== 'container')));
      seen[change] = { answer: Object.values(attack)[0]!, sameContainer: afterContainer === beforeContainer };
    }
    // Affinity the agent sets back, keeping its container; the rest it cannot undo, and retires it.
    for (const change of changes) expect(seen[change]!.sameContainer, change).toBe(change === 'affinity');
    expect(baseline['nofile']).toBe('1024');
    expect(await container()).toMatch(/^[0-9a-f]{64}$/);
    // Changing its own still works: ulimit, nice.
    const self = await lines('attack=self');
    expect(Object.values(self), JSON.stringify(self)).toEqual(['allowed', 'allowed', 'allowed']);
    await report("a function changing its agent's limits", {
      changes,
      kernel: 'allowed (same uid)',
      nextInvocation: { nofile: baseline['nofile'], nproc: baseline['nproc'], nice: baseline['nice'], cpus: baseline['cpus'], policy: baseline['policy'] },
      container: 'retired after each, but affinity (set back)',
    });
  });

  it('answers a CGI header value with a control byte with 502 FUNCTION_BAD_RESPONSE at once, stops the function, and counts it so', async () => {
    const answered: number[] = [];
    const modes = ['control', 'del', 'control-exit'];
    for (const mode of modes) {
      const began = performance.now();
      const response = await fetch(`${gateway.url}/fn/cgi-cases?${mode}`);
      const body = (await response.json()) as any;
      const answeredMs = performance.now() - began;
      expect(response.status, mode).toBe(502);
      expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
      expect(body.error.code).toBe('FUNCTION_BAD_RESPONSE');
      expect(body.error.message).toMatch(mode === 'del' ? /X-A header holds the byte 0x7f/ : /X-A header holds the byte 0x01/);
      expect(answeredMs).toBeLessThan(3000); // not after its 15 s sleep
      answered.push(Math.round(answeredMs));
      // Stopped, not left holding its container until the sleep ends.
      await waitUntil(async () => (await pidsWithEnv('FNIX_FUNCTION', 'cgi-cases')).length === 0, 2000, 'the function to be stopped');
    }
    const metrics = await scrape(gateway.url);
    expect(metrics.value('fnix_invocations_total', { function: 'cgi-cases', kind: 'http', outcome: 'FUNCTION_BAD_RESPONSE' })).toBe(modes.length);
    expect(metrics.value('fnix_invocations_total', { function: 'cgi-cases', kind: 'http', outcome: 'OK' })).toBe(0);
    await waitUntil(
      () => gateway.logs.filter((line) => / invocation function=cgi-cases .*outcome=FUNCTION_BAD_RESPONSE/.test(line)).length === modes.length,
      2000,
      'the log lines',
    );
    await report('a CGI header value with a control byte', {
      answered: '502 FUNCTION_BAD_RESPONSE, JSON',
      answeredMs: answered,
      functionStopped: true,
      countedAs: 'FUNCTION_BAD_RESPONSE',
    });
  });

  it('gives a CGI redirect without Content-Type the documented one, and sends no body with 204, 205 or 304', async () => {
    const redirect = await fetch(`${gateway.url}/fn/cgi-cases?redirect`, { redirect: 'manual' });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get('location')).toBe('/elsewhere');
    expect(redirect.headers.get('content-type')).toBe('application/octet-stream');
    expect(await redirect.text()).toBe('moved\n');
    for (const mode of ['204', '205', '304', '205-streaming']) {
      // Read off the socket: a client library would hide a body it did not expect.
      const answer = await rawRequest(gateway.server.port, `GET /fn/cgi-cases?${mode} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
      const [head, body] = [answer.slice(0, answer.indexOf('\r\n\r\n')), answer.slice(answer.indexOf('\r\n\r\n') + 4)];
      expect(head, mode).toMatch(new RegExp(`^HTTP/1\\.1 ${mode.slice(0, 3)} `));
      expect(body, mode).toBe('');
      expect(head.toLowerCase(), mode).not.toContain('transfer-encoding');
    }
    await report('CGI statuses without a body, and redirects', {
      redirect: '302 with Content-Type application/octet-stream',
      noBody: '204, 205, 304: no body bytes sent',
    });
  });

  it('with "network": true, gives an interface of its own, but no way to the gateway or the host\'s Podman and Nix sockets', async () => {
    const port = gateway.server.port;
    const hello = await alongside(gateway.url);
    const output = await (await fetch(`${gateway.url}/fn/net-probe?${port}`)).text();
    const figures = await hello.stop();
    expect(figures.failures).toBe(0);
    expect(output).toMatch(/^interfaces: .*eth0/m);
    expect(output).toContain(`gateway at 127.0.0.1:${port} unreachable`);
    const bridge = /^default gateway: (\d+\.\d+\.\d+\.\d+)$/m.exec(output)?.[1];
    expect(bridge, output).toBeDefined(); // the host, as the container sees it
    expect(output).toContain(`gateway at ${bridge}:${port} unreachable`);
    for (const socket of ['/run/podman/podman.sock', '/nix/var/nix/daemon-socket/socket']) expect(output).toContain(`${socket} absent`);
    // Its agent's socket is there (read-only), as in every container: it is how the agent talks to fnix.
    await report('network: true', {
      reachable: 'its own interface (podman bridge)',
      gateway: 'unreachable (it listens on 127.0.0.1)',
      podmanAndNixSockets: 'absent',
      hello: figures,
    });
  });
});
