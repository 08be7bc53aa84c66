#!/usr/bin/env sh
# Returns the request body byte for byte; the method, path and query go to stderr (the gateway's log).
echo "$REQUEST_METHOD ${PATH_INFO:-/}${QUERY_STRING:+?$QUERY_STRING}" >&2
exec cat
