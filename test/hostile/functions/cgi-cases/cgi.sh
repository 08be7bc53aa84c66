#!/usr/bin/env sh
# Nothing to do for the deploy check, which starts every function once before it goes live.
[ -z "$FNIX_DEPLOY_CHECK" ] || exit 0
# CGI responses that HTTP does not allow as they are, chosen by QUERY_STRING: a control byte or DEL in
# a header value (then a long sleep: the function must be stopped, not waited for; or an exit at once,
# whose end reaches the gateway with its output), a redirect with a
# body and no Content-Type, and statuses that have no body but for which it writes one.
case "$QUERY_STRING" in
  control) printf 'X-A: a\001b\n\n'; sleep 15 ;;
  control-exit) printf 'X-A: a\001b\n\n' ;;
  del) printf 'X-A: a\177b\n\n'; sleep 15 ;;
  redirect) printf 'Location: /elsewhere\n\nmoved\n' ;;
  204 | 205 | 304) printf 'Status: %s\n\nthis body must not be sent\n' "$QUERY_STRING" ;;
  205-streaming) printf 'Status: 205\n\n'; sleep 0.3; echo 'nor this one' ;;
esac
