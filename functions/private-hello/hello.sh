#!/usr/bin/env sh
# A private function: fnix lets a request in only with an invoke key (docs/keys.md).
name=$(printf '%s' "$QUERY_STRING" | sed -n 's/^\(.*&\)\{0,1\}name=\([^&]*\).*$/\2/p')
echo "Hello, ${name:-world}! Only key holders see this."
