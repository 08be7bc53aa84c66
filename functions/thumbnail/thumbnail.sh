#!/usr/bin/env bash
# The classic serverless example: POST an image, get a PNG thumbnail back, at most ?size=WxH (default
# 128x128, aspect kept; ?size=64 means 64x64). ImageMagick reads the body from stdin (any format it
# knows: PNG, JPEG, GIF, WebP, TIFF…) and writes the PNG to stdout.
#
#   curl -s --data-binary @photo.jpg 'localhost:8080/fn/thumbnail?size=200x150' -o thumb.png
set -euo pipefail

fail() {
  printf 'Status: %s\r\nContent-Type: application/json\r\n\r\n{"error": "%s"}\n' "$1" "$2"
  exit 0
}

size=128x128
for pair in ${QUERY_STRING//&/ }; do
  case "$pair" in size=*) size=${pair#size=} ;; esac
done
[[ $size =~ ^[0-9]{1,4}$ ]] && size="${size}x${size}"
[[ $size =~ ^([0-9]{1,4})x([0-9]{1,4})$ ]] || fail '400 Bad Request' 'size must be WxH or N, each at most 9999'
(( BASH_REMATCH[1] > 0 && BASH_REMATCH[2] > 0 )) || fail '400 Bad Request' 'size must be at least 1x1'
[ "${CONTENT_LENGTH:-0}" -gt 0 ] || fail '400 Bad Request' 'POST an image as the request body'

# Into a file first, so a body ImageMagick cannot read is a 415, not a half-written 200.
out="$TMPDIR/thumb.png"
if ! convert - -auto-orient -thumbnail "${size}>" -strip "png:$out" 2>"$TMPDIR/err"; then
  fail '415 Unsupported Media Type' "not an image ImageMagick can read: $(head -c 200 "$TMPDIR/err" | tr -d '"\\\n')"
fi
printf 'Content-Type: image/png\r\n\r\n'
cat "$out"
