#!/usr/bin/env sh
# Greets whoever ?name= says, or the world; notes on stderr whom it greeted (kept in the function's logs).
name=$(printf '%s' "$QUERY_STRING" | sed -n 's/^\(.*&\)\{0,1\}name=\([^&]*\).*$/\2/p')
echo "Hello, ${name:-world}! This is fnix."
echo "greeted ${name:-world}" >&2
