#!/usr/bin/env bash
# Compiles runtime/, deployments/, cluster/, gateway/ and cli/ to JavaScript in dist/, which is what `npm start` and
# bin/fnix.mjs run. Serving from compiled files rather than through tsx spares the gateway tsx's loader
# thread (about 37 MB of RSS) and the compile at every start. Skipped when nothing it depends on has
# changed since the last build.
# The new build is made beside dist/ and swapped in, under a lock, so that a gateway starting from
# dist/ never sees it half-made.
set -euo pipefail
cd "$(dirname "$0")/.."

exec 9>.fnix-build.lock
flock 9

stamp=$( (find runtime deployments cluster gateway cli -type f -print0 | sort -z | xargs -0 sha256sum
  sha256sum tsconfig.json tsconfig.build.json package-lock.json scripts/build.sh
  node --version) | sha256sum | cut -d' ' -f1)
if [ -f dist/.fnix-build-hash ] && [ "$(cat dist/.fnix-build-hash)" = "$stamp" ]; then
  exit 0
fi
printf 'fnix setup: compiling to dist/\n' >&2
rm -rf dist.new dist.old
node_modules/.bin/tsc -p tsconfig.build.json --outDir dist.new
# Files the runtime reads beside its modules: the agent's C source, the Nix expressions.
find runtime deployments cluster gateway -type f ! -name '*.ts' -exec cp --parents {} dist.new/ \;
echo "$stamp" > dist.new/.fnix-build-hash
if [ -d dist ]; then mv dist dist.old; fi
mv dist.new dist
rm -rf dist.old
