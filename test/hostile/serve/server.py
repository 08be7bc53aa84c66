"""The hostile serve function of test/hostile/serve.podman.test.ts: one server, copied into each
function of that suite, whose HS_MODE (the manifest's env) says how it answers its readiness probe
(GET /healthz), and whose paths are attacks.

HS_MODE:
  normal          answers /healthz with 200, and serves the attacks below
  ready-endless   answers /healthz with a 200 whose body never ends (the probe must not wait for it)
  ready-garbage   answers /healthz with bytes that never make a status line, without end
  ready-slow      answers /healthz a byte every half second
  probe-only      answers /healthz, and holds every other request without an answer
  ready-then-exit answers /healthz, then exits a moment later
  flood           answers /healthz; GET /flood floods stdout and stderr, then trickles a line a second

Attacks (HS_MODE normal), by path: /fork-bomb /memory /network /store /host-files /relay /relay-flood
/huge /garbage /close /bad-header /two-lengths /huge-header /short /bad-chunk /hold. Each answers
JSON with what it saw, or answers badly on purpose, or never answers.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MODE = os.environ.get("HS_MODE", "normal")
INSTANCE = os.environ.get("FNIX_INSTANCE_ID")
PORT = int(os.environ["PORT"])
RELAY = "/run/fnix/relay.sock"


def attempt(what):
    """What `what()` did: its result, or the error it raised."""
    try:
        return {"ok": True, "result": what()}
    except Exception as error:  # noqa: BLE001 -- every failure is an answer here
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}


def connect_tcp(host, port):
    with socket.create_connection((host, port), timeout=2):
        return "connected"


def write_file(path):
    with open(path, "w") as f:
        f.write("fnix was here\n")
    return "written"


def append_file(path):
    with open(path, "ab") as f:
        f.write(b"x")
    return "appended"


def read_file(path, limit=4096):
    with open(path, "rb") as f:
        return f.read(limit).decode("latin1")


def relay_closed_after(payload, wait=5.0):
    """Connects to the agent's relay socket, sends `payload`, and says how long until the host closed it."""
    began = time.monotonic()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(wait)
    try:
        s.connect(RELAY)
        if payload:
            s.sendall(payload)
        try:
            data = s.recv(65536)
            got = "closed" if data == b"" else f"data: {data[:80]!r}"
        except ConnectionResetError:
            got = "reset"
        except socket.timeout:
            got = "still open"
        return {"answer": got, "ms": round((time.monotonic() - began) * 1000)}
    finally:
        s.close()


def relay_attack():
    # One that says nothing: the host closes it at its deadline for an id. Alongside the rest.
    silent = {}
    waiting = threading.Thread(target=lambda: silent.update(relay_closed_after(b"")))
    waiting.start()
    made_up = relay_closed_after(b"\xde\xad\xbe\xef" + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    # Ids as the host hands them out (1, 2, 3...): none is waiting for an answer now.
    guessed = [relay_closed_after((n).to_bytes(4, "big") + b"GET / HTTP/1.1\r\n\r\n", wait=3)["answer"] for n in range(1, 33)]
    # More silent connections at once than the host keeps waiting.
    held = []
    refused_at_once = 0
    for _ in range(100):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.connect(RELAY)
            held.append(s)
        except OSError:
            refused_at_once += 1
    time.sleep(0.3)
    closed_at_once = 0
    for s in held:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed_at_once += 1
        except ConnectionResetError:
            closed_at_once += 1
        except BlockingIOError:
            pass  # still open: waiting for its id
    for s in held:
        s.close()
    waiting.join()
    return {"madeUp": made_up, "silent": silent, "guessed": sorted(set(guessed)), "crowd": {"connected": len(held), "refused": refused_at_once, "closedAtOnce": closed_at_once}}


def relay_flood(seconds):
    """Connects to the relay socket as fast as it can for `seconds`, sending junk; counts the connections."""
    end = time.monotonic() + seconds
    count = 0
    errors = 0
    while time.monotonic() < end:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(RELAY)
            s.sendall(os.urandom(4) + b"junk")
            count += 1
        except OSError:
            errors += 1
        finally:
            s.close()
    return {"connections": count, "errors": errors}


def flood():
    line = b"f" * 1023 + b"\n"
    for fd in (1, 2):
        for _ in range(4096):  # 4 MiB on each
            os.write(fd, line)
    os.write(2, b"g" * (4 << 20))  # and 4 MiB without a newline
    os.write(2, b"\n")
    n = 0
    while True:
        n += 1
        os.write(1, f"trickle {n}\n".encode())
        time.sleep(1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def json(self, body, status=200, close=False):
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def raw(self, data):
        self.wfile.write(data)
        self.wfile.flush()
        self.close_connection = True

    def healthz(self):
        if MODE == "ready-endless":
            self.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n")
            chunk = b"r" * 65536
            while True:
                self.wfile.write(chunk)
        if MODE == "ready-garbage":
            chunk = b"x" * 65536
            while True:
                self.wfile.write(chunk)
        if MODE == "ready-slow":
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.5)
            self.close_connection = True
            return
        if MODE == "ready-then-exit":
            self.json({"ok": True})
            threading.Timer(0.2, lambda: os._exit(0)).start()
            return
        self.json({"ok": True})

    def do_GET(self):
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        if path == "/healthz":
            return self.healthz()
        if MODE == "probe-only":
            time.sleep(3600)
        if path == "/":
            return self.json({"ok": True, "instance": INSTANCE, "mode": MODE})
        if path == "/flood" and MODE == "flood":
            threading.Thread(target=flood, daemon=True).start()
            return self.json({"flooding": True, "instance": INSTANCE})
        if path == "/fork-bomb":
            subprocess.Popen(["busybox", "sh", "-c", "bomb() { bomb | bomb & }; bomb"])
            time.sleep(3600)
        if path == "/memory":
            chunks = []
            while True:
                chunks.append(b"\x01" * (8 << 20))
        if path == "/network":
            interfaces = sorted(os.listdir("/sys/class/net"))
            gateway_port = int(query.get("port", "80"))
            tcp = {f"{h}:{p}": attempt(lambda h=h, p=p: connect_tcp(h, p)) for h, p in [("1.1.1.1", 80), ("8.8.8.8", 53), ("10.88.0.1", 80), ("169.254.169.254", 80), ("127.0.0.1", gateway_port)]}
            dns = attempt(lambda: socket.getaddrinfo("example.com", 80))

            def udp():
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.sendto(b"\0" * 12, ("8.8.8.8", 53))
                return "sent"

            return self.json({"interfaces": interfaces, "tcp": tcp, "dns": dns, "udp": attempt(udp)})
        if path == "/store":
            marker = query["marker"]
            executable = os.path.realpath(sys.executable)
            return self.json(
                {
                    "executable": executable,
                    "newStoreFile": attempt(lambda: write_file(f"/nix/store/{marker}")),
                    "newStoreDir": attempt(lambda: os.mkdir(f"/nix/store/{marker}-dir")),
                    "appendStoreFile": attempt(lambda: append_file(executable)),
                    "removeStoreFile": attempt(lambda: os.remove(executable)),
                    "chmodStoreFile": attempt(lambda: os.chmod(executable, 0o777)),
                    "fn": attempt(lambda: write_file(f"/fn/{marker}")),
                    "root": attempt(lambda: write_file(f"/{marker}")),
                    "etc": attempt(lambda: write_file(f"/etc/{marker}")),
                    "tmp": attempt(lambda: write_file(f"/tmp/{marker}")),
                    "stillThere": os.path.exists(executable),
                }
            )
        if path == "/host-files":
            pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())

            def cmdline(pid):
                try:
                    return read_file(f"/proc/{pid}/cmdline").replace("\0", " ").strip()
                except OSError as error:
                    return f"unreadable: {type(error).__name__}"

            return self.json(
                {
                    "root": sorted(os.listdir("/")),
                    "shadow": attempt(lambda: read_file("/etc/shadow")),
                    "hostRoot": attempt(lambda: os.listdir("/root")),
                    "home": attempt(lambda: os.listdir("/home")),
                    "podmanSocket": os.path.exists("/run/podman/podman.sock"),
                    "nixDaemonSocket": os.path.exists("/nix/var/nix/daemon-socket/socket"),
                    "hostState": attempt(lambda: os.listdir("/var/lib")),
                    "processes": {pid: cmdline(pid) for pid in pids},
                    "env": dict(os.environ),
                    "runFnix": sorted(os.listdir("/run/fnix")),
                }
            )
        if path == "/relay":
            return self.json(relay_attack(), close=True)  # the next request needs a new relay
        if path == "/relay-flood":
            return self.json(relay_flood(float(query.get("seconds", "3"))), close=True)
        if path == "/huge":
            self.raw(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1099511627776\r\n\r\n")
            chunk = b"\0" * (256 << 10)
            while True:
                self.wfile.write(chunk)
        if path == "/garbage":
            return self.raw(b"this is not HTTP at all\r\n\r\n")
        if path == "/close":
            self.close_connection = True
            return
        if path == "/bad-header":
            return self.raw(b"HTTP/1.1 200 OK\r\nX-Evil: a\x01b\r\nContent-Length: 2\r\n\r\nok")
        if path == "/two-lengths":
            return self.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nok")
        if path == "/huge-header":
            return self.raw(b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * (200 << 10) + b"\r\nContent-Length: 2\r\n\r\nok")
        if path == "/short":
            return self.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        if path == "/bad-chunk":
            return self.raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
        if path == "/hold":
            time.sleep(3600)
        self.json({"error": f"no attack {path}"}, status=404)

    def log_message(self, format, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
