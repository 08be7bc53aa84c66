#!/usr/bin/env sh
# Counts the bytes of its stdin as it reads them, and says so on stderr (the gateway's log) after every
# piece, so that what reached it is known even if it is killed before the end.
total=0
while :; do
  n=$(head -c 65536 | wc -c)
  [ "$n" -eq 0 ] && break
  total=$((total + n))
  echo "count-bytes=$total" >&2
done
echo "$total"
