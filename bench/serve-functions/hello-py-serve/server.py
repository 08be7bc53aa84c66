"""The "hello" handler as a long-lived server: Python's standard library, one process for every request.

fnix runs it with PORT set; bench/serve.ts runs the same file on the host too, with the same interpreter.
Every GET answers "hello\n" (readyPath "/" included). X-Bench-Deploy tells which deployment answered
(the manifest's env.BENCH_DEPLOY, which the benchmark changes with each push).
"""
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b"hello\n"
DEPLOY = os.environ.get("BENCH_DEPLOY", "0")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the gateway (and wrk) reuse their connections
    disable_nagle_algorithm = True  # head and body are written apart; do not wait for an ACK between
    wbufsize = 64 * 1024  # head and body leave in one send, when the handler returns

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.send_header("X-Bench-Deploy", DEPLOY)
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format, *args):
        pass  # a line per request would be the benchmark's bottleneck


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
