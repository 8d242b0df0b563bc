# http_streams: what test_http asks of one HTTP/1.1 connection and of a big
# body (README, "Remote"): two requests one after the other on a kept-alive
# connection, three sent in one write (pipelined) answered in order, and a
# worker's big log read slowly (longer than libwebsockets' own 5 s for a
# transaction) arriving whole while other clients are answered meanwhile.
# Prints one line per check; exits 1 if one failed.
#   python3 http_streams.py PORT TOKEN MOUNT WORKER_ID
import socket
import sys
import threading
import time

port, token, mount, worker = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
HOST = "127.0.0.1"
SLOW_RATE = 4_000_000   # bytes a second: the 30 MB log takes 7.5 s
fails = []


def check(what, ok):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        fails.append(what)


def request(path):
    return ("GET /api/%s HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n\r\n"
            % (path, HOST, port, token)).encode()


def mount_bytes(path):
    with open("%s/%s" % (mount, path), "rb") as f:
        return f.read()


class Responses:
    """Responses read one after the other from a socket (Content-Length bodies)."""

    def __init__(self, sock, rate=None):
        self.sock, self.buf, self.rate = sock, b"", rate
        self.got, self.t0 = 0, time.monotonic()

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buf += chunk
        self.got += len(chunk)
        if self.rate:   # a slow client: no faster than rate
            ahead = self.got / self.rate - (time.monotonic() - self.t0)
            if ahead > 0:
                time.sleep(ahead)

    def next(self):
        while b"\r\n\r\n" not in self.buf:
            self.fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        length = int(headers["content-length"])
        parts, have = [self.buf], len(self.buf)
        while have < length:
            self.buf = b""
            self.fill()
            parts.append(self.buf)
            have += len(self.buf)
        body = b"".join(parts)
        self.buf = body[length:]
        return int(lines[0].split()[1]), body[:length]


def get(path):
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(request(path))
        return Responses(s).next()


with socket.create_connection((HOST, port), timeout=10) as s:
    r = Responses(s)
    s.sendall(request("mma/pipeline/status"))
    a = r.next()
    s.sendall(request("mma/pipeline/max_workers"))
    b = r.next()
    check("keep-alive: two requests on one connection, each 200 with the mount's bytes",
          a == (200, mount_bytes("mma/pipeline/status")) and
          b == (200, mount_bytes("mma/pipeline/max_workers")))
    paths = ["mma/pipeline/max_workers", "mma/pipeline/status", "mma/workers/%s/status" % worker]
    s.sendall(b"".join(request(p) for p in paths))
    got = [r.next() for _ in paths]
    check("pipelined: three requests in one write, three answers in order",
          got == [(200, mount_bytes(p)) for p in paths])

log_path = "mma/workers/%s/log" % worker
slow = {}


def read_slowly():
    try:
        with socket.create_connection((HOST, port), timeout=30) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(request(log_path))
            slow["response"] = Responses(s, SLOW_RATE).next()
    except (OSError, EOFError) as e:
        slow["error"] = str(e)
    slow["seconds"] = time.monotonic() - started


started = time.monotonic()
reader = threading.Thread(target=read_slowly)
reader.start()
time.sleep(0.5)
statuses, slowest = [], 0.0
while reader.is_alive() and len(statuses) < 30:
    t0 = time.monotonic()
    statuses.append(get("mma/pipeline/status")[0])
    slowest = max(slowest, time.monotonic() - t0)
    time.sleep(0.2)
reader.join()
check("%d GETs while a client reads the %s bytes of a log slowly: all 200, the slowest in %.3f s (< 2)"
      % (len(statuses), len(mount_bytes(log_path)), slowest),
      len(statuses) >= 10 and statuses == [200] * len(statuses) and slowest < 2)
check("... and the slow client gets all of it, in %.1f s (%s)"
      % (slow["seconds"], slow.get("error", "no error")),
      slow.get("response") == (200, mount_bytes(log_path)))
sys.exit(1 if fails else 0)
