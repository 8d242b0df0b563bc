#!/usr/bin/python3
"""hostile.py: the bad inputs of test_hostile.sh, through the mount, over HTTP
and (those a JSON string can carry: UTF-8) as WebSocket writes. For every
control file and POST route, each input must be refused, with the same errno
on every transport, an error object that is valid UTF-8 JSON with that errno,
its HTTP status and the path, and last_error holding the very same object.
Prints one line per failure and a summary; exit 1 on any.

  hostile.py MOUNT HTTP_URL WS_URL TOKEN_FILE WORKER TRACK
"""
import asyncio
import http.client
import json
import os
import sys
import urllib.parse

import websockets

mount, url, ws_url, token_file, worker, track = sys.argv[1:7]
token = open(token_file).read().strip()
host = urllib.parse.urlparse(url)
STATUS = {"EINVAL": 400, "ENOENT": 404, "EEXIST": 409, "EBUSY": 409, "ELOOP": 409,
          "EFBIG": 413, "EACCES": 403, "EOVERFLOW": 422}

deep = b"[" * 100000 + b"]" * 100000
huge_num = b"9" * 400
common = [
    b"", b"\n", b"   \t  ", b"\x00", b"a\x00b", b"\xff\xfe\xfd", b"\xc3(", b"\xed\xa0\x80",
    b"\xc0\xaf", b"{", b"}", b"[]", b"null", b"true", b"\"str\"", b"{\"a\":", deep,
    b"{\"unknown_field\":1}", b"{\"command\":5}", huge_num, b"-" + huge_num,
    b"-1", b"1e999", b"NaN", b"0x10", b"\x1b[31mred", b"\\u0000", b"{\"x\":\"\\u0000\"}",
    b"{\"id\":\"\\ud800\"}", b"\x7f" * 10, b"; ; ;", b"\r\n\r\n",
] + [b"go " + bytes([b]) for b in range(0x80, 0x100, 4)]   # bytes that cannot start or be UTF-8
# per file: the common inputs that its grammar may take are left out, and
# inputs of its own are added
files = {
    "mma/workers/spawn": [b"x" * (128 * 1024), b"{\"command\":\"\"}", b"{\"command\":\"x\",\"env\":{\"1A\":\"v\"}}",
                          b"{\"command\":\"x\",\"timeout_s\":-5}", b"{\"command\":\"x\",\"cwd\":5}"],
    "mma/workers/kill": [b"0", b"-5", b"99999999999", b"1 NOSUCHSIG", b"1 TERM grace=-1",
                         b"1 TERM grace=99999999", b"abc", b"1 2 3 4"],
    f"mma/workers/{worker}/kill": [b"NOSUCHSIG", b"TERM grace=-1", b"TERM TERM"],
    f"mma/workers/{worker}/usage": [b"model=m1", b"model=m1 in=-1 out=0", b"model= in=1 out=1",
                                    b"model=m1 in=1000000000001 out=0", b"in=1 out=1",
                                    b"model=m1 in=1 out=1 bogus=1", b"{\"model\":\"m1\"}",
                                    b"{\"model\":\"m1\",\"input_tokens\":1.5,\"output_tokens\":0}"],
    "mma/tracks/create": [b"{\"id\":\"BAD ID\",\"tasks\":[]}", b"{\"tasks\":[]}",
                          b"{\"id\":\"" + track.encode() + b"\",\"tasks\":[]}",
                          b"{\"id\":\"n1\",\"tasks\":[{\"id\":\"a\",\"command\":\"x\",\"deps\":[\"a\"]}]}",
                          b"{\"id\":\"n2\",\"tasks\":[{\"id\":\"b\"}]}", b"{\"id\":\"n3\",\"budget_usd\":-1,\"tasks\":[]}"],
    f"mma/tracks/{track}/budget": [b"-1", b"abc", b"1.0000001", b"1e3", b"99999999999999"],
    "mma/dag/mutate": [b"frobnicate x", b"hold", b"hold nosuch", b"add_dep a", b"{\"op\":\"hold\"}",
                       b"[{\"op\":\"hold\",\"task\":5}]", b"remove_task"],
    "mma/pipeline/max_workers": [b"-1", b"0", b"abc", b"1 2", b"99999999999", b"1.5"],
    "context/inject": [b"/nonexistent/file", b"skeleton", b"text", b"{\"path\":5}", b"bogus /etc/hostname"],
    "context/remove": [b"nosuch", b"../x", b"{\"name\":5}"],
    "mma/pipeline/pause": [],
    "mma/pipeline/resume": [],
}
def text(b):
    return b"\x00" not in b and valid_utf8(b)


def command_line(b):
    """spawn's line form: any text not blank and not JSON is a shell command"""
    s = b.strip()
    return text(b) and s != b"" and not s.startswith(b"{") and len(b) < 128 * 1024


# what a grammar takes as valid: left out of its common inputs
takes = {
    "mma/pipeline/pause": text,
    "mma/pipeline/resume": text,
    "mma/workers/spawn": command_line,
}


def valid_utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def last_error():
    with open(os.path.join(mount, "last_error"), "rb") as f:
        return f.read()


def error_ok(raw, path, where):
    """The error object's errno, or a complaint."""
    try:
        doc = json.loads(raw.decode("utf-8"))
        e = doc["error"]
        assert set(doc) == {"error"} and set(e) == {"status", "errno", "message", "path", "ts"}
        assert e["status"] == STATUS.get(e["errno"]), f"status {e['status']} for {e['errno']}"
        assert e["path"] == path and e["message"], "path or message"
        return e["errno"], None
    except Exception as x:  # noqa: BLE001 - any way it is wrong is the finding
        return None, f"{where}: not the error object ({x!r}): {raw[:200]!r}"


def via_mount(path, data):
    fd = os.open(os.path.join(mount, path), os.O_RDWR)
    try:
        try:
            os.write(fd, data)
            refused = False
        except OSError:
            refused = True
        # the result or error object, on the same descriptor (a write of a
        # multiple of 4 KiB may be continued, so it is applied at this read)
        back = os.read(fd, 1 << 20)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    errno, why = error_ok(back, path, "mount")
    if why:
        return None, "the write succeeded" if not refused else why
    if last_error().rstrip(b"\n") != back.rstrip(b"\n"):
        return None, "last_error is not the object the write read back"
    return errno, None


def via_http(path, data):
    c = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
    c.request("POST", "/api/" + path, body=data,
              headers={"Authorization": "Bearer " + token, "Content-Type": "text/plain"})
    r = c.getresponse()
    body = r.read()
    c.close()
    if r.status == 200:
        return None, "HTTP 200"
    errno, why = error_ok(body, path, "http")
    if why:
        return None, why
    if r.status != STATUS[errno]:
        return None, f"HTTP {r.status} for {errno}"
    if body.rstrip(b"\n") != last_error().rstrip(b"\n"):
        return None, "last_error is not the HTTP error object"
    return errno, None


class WS:
    """one WebSocket client for every write, in order"""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.ws = self.loop.run_until_complete(websockets.connect(
            ws_url, subprotocols=["orchfs.v1"], extra_headers={"Authorization": "Bearer " + token},
            max_size=1 << 24, ping_interval=None))
        self.n = 0

    def write(self, path, text):
        self.n += 1
        msg = {"op": "write", "path": path, "body": text, "id": self.n}

        async def ask():
            await self.ws.send(json.dumps(msg))
            while True:
                r = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
                if r.get("id") == self.n:
                    return r
        return self.loop.run_until_complete(ask())


def via_ws(ws, path, data):
    r = ws.write(path, data.decode("utf-8"))
    if r.get("ok") is not False:
        return None, "WS write ok"
    errno, why = error_ok(json.dumps({"error": r.get("error")}).encode(), path, "ws")
    if why:
        return None, why
    if json.loads(last_error()) != {"error": r["error"]}:
        return None, "last_error is not the WS error object"
    return errno, None


ws = WS()
failures = total = 0
fewest = None
for path, own in files.items():
    inputs = [b for b in common if not takes.get(path, lambda _: False)(b)] + own
    fewest = min(fewest or len(inputs), len(inputs))
    for data in inputs:
        total += 1
        # a write(2) of nothing never reaches the file system: HTTP only
        m_errno, m_why = via_mount(path, data) if data else (None, None)
        h_errno, h_why = via_http(path, data)
        if not data:
            m_errno = h_errno
        w_errno, w_why = via_ws(ws, path, data) if valid_utf8(data) else (m_errno, None)
        why = m_why or h_why or w_why or (
            None if m_errno == h_errno == w_errno else f"mount {m_errno}, http {h_errno}, ws {w_errno}")
        if why:
            failures += 1
            print(f"FAIL {path} {data[:60]!r}: {why}")
print(f"hostile: {total} inputs over {len(files)} control files (at least {fewest} each), each "
      f"through the mount, over HTTP and (UTF-8 ones) over WebSocket; {failures} failures")
sys.exit(1 if failures else 0)
