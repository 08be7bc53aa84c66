"""A serve function in Python's standard library: one process answers every request.

    curl -s localhost:8080/fn/counter-py/hits            # {"hits": 1, "instance": "i-...", ...}
    curl -s localhost:8080/fn/counter-py/hits            # {"hits": 2, ...}: the same process
    curl -s -X POST localhost:8080/fn/counter-py/echo -d '{"a": 1}'

fnix starts it once per instance with PORT set and waits for GET /healthz to answer. The counter lives
in this process's memory, so it grows from call to call, and starts again at 0 in a new instance.
"""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

hits = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the gateway reuses its connection
    disable_nagle_algorithm = True  # head and body are written apart; do not wait for an ACK between
    wbufsize = 64 * 1024  # head and body leave in one send, when the handler returns

    def answer(self, status, body):
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        global hits
        if self.path == "/healthz":
            return self.answer(200, {"ok": True})
        if self.path.split("?")[0] in ("/", "/hits"):
            hits += 1
            return self.answer(200, {"hits": hits, "instance": os.environ.get("FNIX_INSTANCE_ID"), "pid": os.getpid(),
                                     "invocation": self.headers.get("X-Fnix-Invocation-Id")})
        self.answer(404, {"error": f"no route {self.path}; try /hits or POST /echo"})

    def do_POST(self):
        if self.path != "/echo":
            return self.answer(404, {"error": f"no route {self.path}; try POST /echo"})
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError as error:
            return self.answer(400, {"error": f"the body is not JSON: {error}"})
        self.answer(200, {"echo": body})

    def log_message(self, format, *args):
        pass  # one line per request would flood the log; fnix logs every invocation already


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
