#!/usr/bin/env node
// The `fnix` command: runs the compiled CLI (dist/cli/main.js, from cli/). In a clone, dist/ is built by
// `npm start`, `npm test` or scripts/build.sh; when it is missing, older than cli/, or of no known build
// (no dist/.fnix-build-hash, which scripts/build.sh writes last), it is built here first, with a line on
// stderr saying so (scripts/build.sh skips the work when its hash says dist/ is current).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, utimesSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const main = join(root, 'dist', 'cli', 'main.js');
// Touched after each check that built (or found nothing to build), so that the next run need not ask.
const stamp = join(root, 'dist', '.fnix-build-hash');

/** The newest modification time of the files under `dir`. */
const newest = (dir) =>
  Math.max(0, ...readdirSync(dir, { withFileTypes: true }).map((e) => (e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs)));

const sources = join(root, 'cli');
// Without the stamp nothing says which sources dist/ was built from (an old or interrupted build): build.
const stale = !existsSync(main) || (existsSync(sources) && (!existsSync(stamp) || newest(sources) > statSync(stamp).mtimeMs));
if (stale && existsSync(join(root, 'node_modules', '.bin', 'tsc'))) {
  if (!existsSync(main)) console.error('fnix: the CLI is not built yet: building dist/ first (scripts/build.sh)');
  const built = spawnSync('bash', [join(root, 'scripts', 'build.sh')], { stdio: ['ignore', 2, 'inherit'] });
  if (built.status === 0) {
    if (existsSync(stamp)) utimesSync(stamp, new Date(), new Date());
  } else if (existsSync(main)) console.error('fnix: building cli/ failed (above); running the CLI as last built');
}
if (!existsSync(main)) {
  console.error(`fnix: the CLI is not built (${main} is missing); run npm install, then bash scripts/build.sh, in ${root}`);
  process.exit(1);
}
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const { run } = await import(main);
process.exitCode = await run(process.argv, process.env, { version });
