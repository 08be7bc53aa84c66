#!/usr/bin/env bash
# fnix set-up for a fresh Debian 12 machine: installs whatever is missing (system packages, npm
# dependencies) and builds the offline package set. Safe to run again: it only does what is
# missing, so `npm start` and `npm test` run it every time. `--test` adds what only the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'fnix setup: %s\n' "$*" >&2; }

# Debian package -> a file it installs (checked where dpkg is missing). Every one of them is needed at
# run time or by the tests.
declare -A PACKAGES=(
  [podman]=/usr/bin/podman
  [runc]=/usr/sbin/runc
  [nix-bin]=/usr/bin/nix-build
  [busybox-static]=/bin/busybox
  [bash-static]=/bin/bash-static
  [gojq]=/usr/bin/gojq
  [gcc]=/usr/bin/gcc
  [libc6-dev]=/usr/include/stdio.h
  [git]=/usr/bin/git
  # better-sqlite3 (the invocation records' store) compiles its native module at `npm ci`: no prebuilt
  # binary can be downloaded here, so node-gyp builds it against Node's own headers.
  [g++]=/usr/bin/g++
  [make]=/usr/bin/make
  [python3]=/usr/bin/python3
)
# With --test (what `npm test` passes): what only the test suite needs. The browser terminal's test
# drives Debian's Chromium through playwright-core; nothing downloads a browser. With --bench (what
# `npm run bench` passes), and with --test, whose suite runs the benchmark briefly: wrk, its load
# generator.
if [ "${1:-}" = "--test" ]; then
  PACKAGES[chromium]=/usr/bin/chromium
  PACKAGES[file]=/usr/bin/file  # the thumbnailer's test asks `file` what a PNG is
  # The cluster suite (test/helpers/cluster/): hosts in network namespaces, the store over the network.
fi
if [ "${1:-}" = "--test" ] || [ "${1:-}" = "--bench" ]; then
  PACKAGES[wrk]=/usr/bin/wrk
  # The cluster suite and benchmark (test/helpers/cluster/): hosts in network namespaces, the store over the network.
  PACKAGES[sshfs]=/usr/bin/sshfs                   # each node mounts the shared store over sshfs (NFS's stand-in)
  PACKAGES[openssh-server]=/usr/sbin/sshd          # the sshd that exports the store to sshfs, run by the lab only
  PACKAGES[iproute2]=/usr/sbin/ip                  # `ip netns`, veths, a bridge and blackhole routes
  PACKAGES[etcd-server]=/usr/bin/etcd              # the cluster's coordination: three real members
  PACKAGES[haproxy]=/usr/sbin/haproxy              # the cluster's front: routes to the nodes
fi
# A package counts as installed when dpkg says so, not when its file exists: Debian's dynamic busybox
# (which initramfs-tools recommends) installs /bin/busybox too, and the starter set needs the static one.
installed() {
  if command -v dpkg-query >/dev/null; then
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'
  else
    [ -e "${PACKAGES[$1]}" ]
  fi
}
missing=()
for pkg in "${!PACKAGES[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages: ${missing[*]}"
    log "fnix runs rootful Podman and single-user Nix, so it needs root. Run as root:"
    log "  $cmd"
    exit 1
  fi
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian starts a package's service at install where no policy-rc.d forbids it: the tests run their
  # own sshd, etcd and HAProxy in namespaces, so a system daemon that this install just started is stopped.
  for pkg in "${missing[@]}"; do
    case $pkg in openssh-server) svc=ssh ;; etcd-server) svc=etcd ;; haproxy) svc=haproxy ;; *) continue ;; esac
    if [ -x "/etc/init.d/$svc" ]; then "/etc/init.d/$svc" stop >/dev/null 2>&1 || true; fi
  done
fi

# npm dependencies, reinstalled when package-lock.json changes.
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -d node_modules ] || [ "$(cat node_modules/.fnix-lock-hash 2>/dev/null)" != "$lock_hash" ]; then
  log "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > node_modules/.fnix-lock-hash
fi

# The offline package set (runtime/nix/offline): Debian's archives fetched and imported into the store
# (only what is missing), then every package built by Nix, offline and sandboxed. The outputs are GC
# roots, so nix-collect-garbage leaves them. A second run finds everything built and builds nothing.
mkdir -p /nix/store /nix/var/nix/gcroots/fnix
# One set-up at a time on a host: the GC roots below are the host's.
exec 8>/nix/var/nix/gcroots/fnix/.setup.lock
flock 8
node --import tsx scripts/fetch-debs.ts
roots=/nix/var/nix/gcroots/fnix/offline-set
started=$SECONDS
if ! out=$(nix-build --option sandbox true --option sandbox-fallback false --option substituters '' --max-jobs 2 \
    -E "let set = import (/. + \"$PWD/runtime/nix/offline\") {}; in [ set.busybox set.bash set.gojq set.patchelf set.cacert ] ++ builtins.attrValues set.debian" \
    --out-link "$roots.new/package" 2>&1); then
  log "building the offline package set failed:"
  printf '%s\n' "$out" | tail -40 >&2
  exit 1
fi
# The new roots replace the old ones (a package Debian updated leaves its old path to deployments' roots).
rm -rf "$roots" && mv "$roots.new" "$roots"
if grep -q '^building ' <<<"$out"; then log "offline package set built in $((SECONDS - started)) s"; fi
exec 8>&-

# The JavaScript that `npm start` runs.
bash scripts/build.sh
