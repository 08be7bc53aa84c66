#!/usr/bin/env sh
# A CGI response: the status line and headers come first, then a blank line, then the body.
printf 'Status: 418 I'"'"'m a teapot\r\n'
printf 'Content-Type: application/json\r\n'
printf 'Cache-Control: no-store\r\n'
printf '\r\n'
printf '{"short": true, "stout": true, "method": "%s"}\n' "$REQUEST_METHOD"
