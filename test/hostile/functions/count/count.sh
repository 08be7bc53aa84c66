#!/usr/bin/env sh
# Counts the bytes of its stdin as it reads them, and says so on stderr (the gateway's log) after every
# piece, so that what reached it is known even if it is killed before the end.
total=0
while :; do
  n=$(dd bs=65536 count=1 2>/dev/null | wc -c)  # one read(2): never more than it counts
  [ "$n" -eq 0 ] && break
  total=$((total + n))
  echo "count-bytes=$total" >&2
done
echo "$total"
