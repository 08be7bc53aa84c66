/**
 * @module
 * What the many-host tests and the cluster benchmark do to a lab's cluster: a repository to push from
 * (its packages.nix builds a program of its own, with a nonce, so that each push makes store paths the
 * nodes have never seen), and a load of requests that records how each one ended and how long it took.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { GIT_ENV, git, gitWithin } from '../git.ts';

/** How long a push may take before it is SIGKILLed (a hang shows as a failed push, never as a stuck test). */
export const PUSH_TIMEOUT_MS = 120_000;

/** A packages.nix whose `greeting-<nonce>` prints `text`, its builder sleeping `buildSeconds` first. */
export function greetingSet(nonce: string, text: string, buildSeconds = 0): string {
  return `let
  fnix = import <fnix> { };
in
fnix // {
  greeting = derivation {
    name = "greeting-${nonce}";
    system = builtins.currentSystem;
    builder = "\${fnix.busybox}/bin/sh";
    args = [ "-c" ''
      \${fnix.busybox}/bin/sleep ${buildSeconds}
      \${fnix.busybox}/bin/mkdir -p $out/bin
      printf '#!\${fnix.bash}/bin/bash\\necho ${text}\\n' > $out/bin/greeting
      \${fnix.busybox}/bin/chmod 0555 $out/bin/greeting
    '' ];
  };
}
`;
}

/** The store path `greetingSet(nonce, …)`'s greeting will have, evaluated here against the offline set as `<fnix>`. */
export async function greetingPath(root: string, file: string): Promise<string> {
  const { stdout } = await execa('nix-instantiate', ['--eval', '-I', `fnix=${join(root, 'runtime/nix/offline')}`, '-E', `(import ${file}).greeting.outPath`]);
  return JSON.parse(stdout) as string;
}

/** A repository with `greet` (the greeting) and `hello`; `push` rewrites packages.nix, commits and pushes to `remote` (killed after {@link PUSH_TIMEOUT_MS}). */
export async function greetRepository(dir: string, helloDir: string) {
  await execa('git', ['init', '--quiet', '--initial-branch', 'main', dir], { env: GIT_ENV });
  await mkdir(join(dir, 'functions', 'greet'), { recursive: true });
  await writeFile(join(dir, 'functions', 'greet', 'function.json'), JSON.stringify({ packages: ['greeting', 'busybox'], command: ['greeting'] }));
  await execa('cp', ['-r', helloDir, join(dir, 'functions', 'hello')]);
  return {
    dir,
    async push(remote: string, nonce: string, text: string, buildSeconds = 0) {
      await writeFile(join(dir, 'packages.nix'), greetingSet(nonce, text, buildSeconds));
      await git(dir, 'add', '--all');
      await git(dir, 'commit', '--quiet', '--allow-empty', '-m', `greeting ${nonce}`);
      return gitWithin(PUSH_TIMEOUT_MS, dir, 'push', remote, 'main');
    },
    /** Drops the last commit (a push that was refused), so that the next one is made against what is live. */
    async undo() {
      await git(dir, 'reset', '--quiet', '--hard', 'HEAD~1');
    },
  };
}

/** How one request of a load ended. */
export interface Outcome {
  startMs: number;
  ms: number;
  status: number | 'error';
  node: string | null;
}

/**
 * `concurrency` loops of POSTs to `url` until `stop()` is called; each request has `timeoutMs` (a hang
 * shows as a timeout error, never as a stuck test).
 */
export function load(url: string, concurrency: number, timeoutMs = 10_000) {
  const outcomes: Outcome[] = [];
  const begin = performance.now();
  let running = true;
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) {
      const start = performance.now();
      try {
        const answer = await fetch(url, { method: 'POST', body: '', signal: AbortSignal.timeout(timeoutMs) });
        await answer.arrayBuffer();
        outcomes.push({ startMs: start - begin, ms: performance.now() - start, status: answer.status, node: answer.headers.get('x-fnix-node') });
      } catch {
        outcomes.push({ startMs: start - begin, ms: performance.now() - start, status: 'error', node: null });
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  });
  return {
    outcomes,
    elapsedMs: () => performance.now() - begin,
    async stop(): Promise<Outcome[]> {
      running = false;
      await Promise.all(loops);
      return outcomes;
    },
  };
}
