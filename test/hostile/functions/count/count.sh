#!/usr/bin/env sh
# Counts the bytes of its stdin, and says so on stderr (the gateway's log) as well as on stdout.
n=$(wc -c | tr -d ' ')
echo "count-bytes=$n" >&2
echo "$n"
