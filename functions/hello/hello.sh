#!/usr/bin/env sh
# Greets whoever ?name= says, or the world.
name=$(printf '%s' "$QUERY_STRING" | sed -n 's/^\(.*&\)\{0,1\}name=\([^&]*\).*$/\2/p')
echo "Hello, ${name:-world}! This is fnix."
