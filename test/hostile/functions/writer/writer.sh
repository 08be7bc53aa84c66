#!/usr/bin/env sh
# Nothing to do for the deploy check, which starts every function once before it goes live.
[ -z "$FNIX_DEPLOY_CHECK" ] || exit 0
# Tries to write everywhere; prints one line per place: "<path> written" or "<path> refused".
for path in /nix/store/fnix-was-here /fn/fnix-was-here /fnix-was-here /etc/fnix-was-here /usr/fnix-was-here /run/fnix-was-here /dev/fnix-was-here /tmp/fnix-was-here; do
  if echo x > "$path" 2>/dev/null; then echo "$path written"; else echo "$path refused"; fi
done
# An existing store file, overwritten or removed:
target=$(ls -d /nix/store/*-busybox*/bin/busybox | head -n 1)
if echo x >> "$target" 2>/dev/null; then echo "store file changed"; else echo "store file refused"; fi
if rm -f "$target" 2>/dev/null && [ ! -e "$target" ]; then echo "store file removed"; else echo "store file kept"; fi
# What an earlier invocation left in /tmp and /dev/shm:
ls -A /tmp | grep -v '^fnix-was-here$' | sed 's/^/left: /'
ls -A /dev/shm | sed 's/^/left in shm: /'
echo "left by me" > /tmp/leftover-$$
echo "left by me" > /dev/shm/leftover-$$
# Which container this is, to tell a reused one from a fresh one:
grep -o 'libpod-[0-9a-f]*' /proc/self/cgroup | head -n 1 | sed 's/^/container: /'
