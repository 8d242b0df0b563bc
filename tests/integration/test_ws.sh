#!/usr/bin/env bash
# test_ws: the WebSocket protocol orchfs.v1 (README, "Remote: HTTP, SSE and WebSocket"), driven by small
# Python clients (Debian's python3 with websockets 10.4, plus a raw socket):
# the handshake (subprotocol, token in a header or ?token=, 401 without one,
# 403 for a foreign Origin or Host, a matching Origin accepted); subscribe
# with and without channels, and since=N replays exactly N+1..M (no gap, no
# duplicate), events of 300 and 70,000 bytes whole; unsubscribe stops a channel; read and write with request ids
# (echoed; ok true with the result as JSON or a string; ok false with the
# error object, also in last_error); bad messages answered with EINVAL while
# the connection stays open; telemetry frames at about --telemetry-hz; and a
# stalled client is closed with 1013 naming its last seq while a healthy one
# receives every event of a burst in order and the mount keeps answering;
# a client that never reads is closed after --ws-queue-window past
# --ws-queue-soft, not before.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
if ! [ -x "$PY" ] || ! "$PY" -c 'import websockets' 2>/dev/null; then
	_skip_or_fail "no $PY with the websockets module"
fi

orchfs_start_api --max-workers 4 --telemetry-hz 20
cd "$M" || exit 1

WSPY=$T/ws.py
cat >"$WSPY" <<'EOF'
# Each mode prints PASS NAME or FAIL NAME: WHY lines, which test_ws.sh counts.
import asyncio, base64, json, os, re, socket, struct, sys, time
import websockets

WSURL, TOKEN, M = os.environ["WSURL"], os.environ["TOKEN"], os.environ["M"]
HTTP_PORT, WS_PORT = int(os.environ["HTTP_PORT"]), int(os.environ["WS_PORT"])
HDR = {"Authorization": "Bearer " + TOKEN}
EVENT_CHANNELS = ["workers", "dag", "pipeline", "context", "metrics", "system"]


def check(name, ok, why=""):
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else ": " + str(why)[:400]), flush=True)
    return ok


async def connect(path="/", headers=HDR, **kw):
    return await websockets.connect(WSURL + path, subprotocols=["orchfs.v1"], extra_headers=headers,
                                    open_timeout=5, close_timeout=2, max_queue=None, max_size=None, **kw)


# --- the mount ---
def mount_write(rel, data):
    """One write to a control file; the result line read back (raises OSError)."""
    fd = os.open(os.path.join(M, rel), os.O_RDWR)
    try:
        os.write(fd, data.encode())
        return os.read(fd, 1 << 20).decode()
    finally:
        os.close(fd)


def mount_json(rel):
    with open(os.path.join(M, rel)) as f:
        return json.load(f)


def state_seq():
    return mount_json("state.json")["seq"]


def spawn(cmd):
    return json.loads(mount_write("mma/workers/spawn", cmd))["id"]


async def settle_light(timeout=10):
    """settle() by telemetry.json, which is small when the workers are many."""
    end = time.time() + timeout
    last = None
    while time.time() < end:
        t = mount_json("system/telemetry.json")
        if t["workers"]["running"] == 0:
            if t["events"]["seq"] == last:
                return last
            last = t["events"]["seq"]
        await asyncio.sleep(0.2)
    return mount_json("system/telemetry.json")["events"]["seq"]


async def settle(timeout=5):
    """Waits until no worker runs and the seq stops moving; returns the seq."""
    end = time.time() + timeout
    last = None
    while time.time() < end:
        if mount_json("mma/workers.json")["running"] == 0:
            s = state_seq()
            if s == last:
                return s
            last = s
        await asyncio.sleep(0.1)
    return state_seq()


# --- frames ---
async def recv(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def request(ws, msg, timeout=5):
    """Sends msg, returns (its reply, event frames that came before it)."""
    await ws.send(msg if isinstance(msg, str) else json.dumps(msg))
    events = []
    end = time.time() + timeout
    while True:
        m = await recv(ws, max(0.1, end - time.time()))
        if "seq" in m or m.get("channel") == "telemetry":
            events.append(m)
        else:
            return m, events


async def events_until(ws, seq, timeout=10, into=None):
    """Event frames until one with seq >= seq (or the timeout)."""
    got = [] if into is None else into
    end = time.time() + timeout
    try:
        while not got or got[-1].get("seq", 0) < seq:
            m = await recv(ws, max(0.05, end - time.time()))
            if "seq" in m:
                got.append(m)
    except asyncio.TimeoutError:
        pass
    return got


async def quiet(ws, secs):
    """Frames that arrive within secs."""
    got = []
    end = time.time() + secs
    try:
        while time.time() < end:
            got.append(await recv(ws, max(0.01, end - time.time())))
    except asyncio.TimeoutError:
        pass
    return got


def seqs(frames):
    return [f["seq"] for f in frames if "seq" in f]


def error_ok(e, status, errno, path):
    return (isinstance(e, dict) and sorted(e) == ["errno", "message", "path", "status", "ts"] and
            re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["ts"]) is not None and
            e["status"] == status and (errno is None or e["errno"] == errno) and
            isinstance(e["message"], str) and e["message"] and e["path"] == path)


# --- a raw client: the handshake by hand, frames by hand ---
def raw_handshake(headers, rcvbuf=None, path="/"):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(5)
    s.connect(("127.0.0.1", WS_PORT))
    key = base64.b64encode(os.urandom(16)).decode()
    h = {"Host": "127.0.0.1:%d" % WS_PORT, "Upgrade": "websocket", "Connection": "Upgrade",
         "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13", "Sec-WebSocket-Protocol": "orchfs.v1"}
    h.update(headers)
    s.sendall(("GET %s HTTP/1.1\r\n" % path + "".join("%s: %s\r\n" % kv for kv in h.items() if kv[1] is not None)
               + "\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    hdrs = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    if status != 101 and "content-length" in hdrs:
        n = int(hdrs["content-length"])
        while len(rest) < n:
            d = s.recv(65536)
            if not d:
                break
            rest += d
    return s, status, hdrs, rest


def raw_send(s, text):
    p = text.encode()
    mask = os.urandom(4)
    n = len(p)
    hdr = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
    s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(p)))


def raw_frames(s, buf, timeout):
    """Frames until a close frame, EOF or the timeout: [(opcode, payload)], why it stopped."""
    s.settimeout(timeout)
    frames, why = [], "eof"

    def need(k):
        nonlocal buf, why
        while len(buf) < k:
            try:
                d = s.recv(1 << 20)
            except socket.timeout:
                why = "timeout"
                return False
            except OSError as e:
                why = repr(e)
                return False
            if not d:
                return False
            buf += d
        return True

    while need(2):
        op, n, off = buf[0] & 0x0F, buf[1] & 0x7F, 2
        if n == 126:
            if not need(4):
                break
            n, off = struct.unpack(">H", buf[2:4])[0], 4
        elif n == 127:
            if not need(10):
                break
            n, off = struct.unpack(">Q", buf[2:10])[0], 10
        if not need(off + n):
            break
        frames.append((op, buf[off:off + n]))
        buf = buf[off + n:]
        if op == 8:
            why = "close"
            break
    return frames, why


# ===================== modes =====================

async def handshake():
    async def status_of(**kw):
        try:
            ws = await connect(**kw)
        except websockets.exceptions.InvalidStatusCode as e:
            return e.status_code
        except Exception as e:
            return repr(e)
        ok = ws.subprotocol
        r, _ = await request(ws, {"op": "read", "path": "mma/pipeline/status", "id": 1})
        await ws.close()
        return 101 if ok == "orchfs.v1" and r.get("ok") else "connected but %r %r" % (ok, r)

    wrong = TOKEN.translate(str.maketrans("0123456789abcdef", "123456789abcdef0"))
    check("a token in the Authorization header is accepted (subprotocol orchfs.v1)", await status_of() == 101)
    st = await status_of(headers={})
    check("no token: 401 at the handshake", st == 401, st)
    st = await status_of(headers={"Authorization": "Bearer " + wrong})
    check("a wrong token of the right length: 401", st == 401, st)
    st = await status_of(headers={"Authorization": "Bearer " + TOKEN[:40]})
    check("a token of another length: 401", st == 401, st)
    st = await status_of(path="/?token=" + TOKEN, headers={})
    check("?token= is accepted", st == 101, st)
    st = await status_of(path="/?token=" + wrong, headers={})
    check("a wrong ?token=: 401", st == 401, st)
    for origin in ["http://evil.example", "http://evil.example:%d" % HTTP_PORT, "https://127.0.0.1.evil.example:%d" % WS_PORT,
                   "http://127.0.0.1:1", "null"]:
        st = await status_of(origin=origin)
        check("a foreign Origin %s: 403 at the handshake" % origin, st == 403, st)
    for origin in ["http://127.0.0.1:%d" % HTTP_PORT, "http://localhost:%d" % HTTP_PORT, "http://127.0.0.1:%d" % WS_PORT]:
        st = await status_of(origin=origin)
        check("a matching Origin %s is accepted" % origin, st == 101, st)

    # the refusals by hand: a real HTTP status with the error object
    s, st, h, body = raw_handshake({})
    s.close()
    try:
        e = json.loads(body)["error"]
    except Exception as x:
        e = repr(x)
    check("the 401 refusal is HTTP/1.1 401 with the error object", st == 401 and error_ok(e, 401, None, ""), (st, body))
    s, st, h, body = raw_handshake({"Authorization": "Bearer " + TOKEN, "Origin": "http://evil.example"})
    s.close()
    check("the 403 refusal (Origin) carries the error object", st == 403 and b'"status":403' in body, (st, body))
    s, st, h, body = raw_handshake({"Authorization": "Bearer " + TOKEN, "Host": "evil.example:%d" % WS_PORT})
    s.close()
    check("a foreign Host: 403 at the handshake", st == 403, (st, body))
    s, st, h, body = raw_handshake({"Authorization": "Bearer " + TOKEN})
    check("the raw handshake is 101 with the subprotocol", st == 101 and h.get("sec-websocket-protocol") == "orchfs.v1", (st, h))
    s.close()


async def ops():
    ws = await connect()
    r, _ = await request(ws, {"op": "read", "path": "mma/pipeline/status", "id": 1})
    check("read a one-word file: ok, the id echoed, the result a string",
          r == {"id": 1, "ok": True, "result": "running\n"}, r)
    r, _ = await request(ws, {"op": "read", "path": "mma/workers.json", "id": "w"})
    check("read a JSON file: the result is the JSON itself",
          r.get("id") == "w" and r.get("ok") is True and r.get("result") == mount_json("mma/workers.json"), r)
    r, _ = await request(ws, {"op": "read", "path": "mma/workers", "id": {"n": [1, 2]}})
    check("read mma/workers (as GET /api/): workers.json; an object id echoed",
          r.get("id") == {"n": [1, 2]} and r.get("result") == mount_json("mma/workers.json"), r)
    r, _ = await request(ws, {"op": "read", "path": "state"})
    check("read state: state.json with its seq; no id, no id in the reply",
          "id" not in r and r.get("ok") is True and isinstance(r.get("result", {}).get("seq"), int), str(r)[:200])
    r, _ = await request(ws, {"op": "read", "path": "mma", "id": 2})
    check("read a directory: its listing",
          r.get("ok") is True and r["result"].get("path") == "mma" and
          any(e["name"] == "workers.json" for e in r["result"]["entries"]), r)
    r, _ = await request(ws, {"op": "read", "path": "nosuch/file", "id": 3})
    check("read an unknown path: ok false, 404 ENOENT with the path",
          r.get("id") == 3 and r.get("ok") is False and "result" not in r and error_ok(r.get("error"), 404, "ENOENT", "nosuch/file"), r)
    r, _ = await request(ws, {"op": "read", "path": "mma/workers/spawn", "id": 4})
    check("read a control file: ok false, 405", r.get("ok") is False and error_ok(r.get("error"), 405, None, "mma/workers/spawn"), r)

    r, _ = await request(ws, {"op": "write", "path": "mma/workers/spawn", "body": "echo from-ws", "id": 5})
    wid = r.get("result", {}).get("id") if isinstance(r.get("result"), dict) else None
    check("write spawn: ok, the result is the worker's JSON", r.get("id") == 5 and r.get("ok") is True and isinstance(wid, int), r)
    end = time.time() + 5
    while wid and time.time() < end and open(os.path.join(M, "mma/workers/%d/status" % wid)).read() != "exited\n":
        await asyncio.sleep(0.05)
    check("... and the worker ran, on the mount", wid and open(os.path.join(M, "mma/workers/%d/log" % wid)).read() == "from-ws\n")
    r, _ = await request(ws, {"op": "write", "path": "mma/workers/spawn", "body": {"command": "true", "model": "m1"}, "id": 6})
    check("write spawn with a JSON body given as JSON", r.get("ok") is True and r["result"].get("model") == "m1", r)
    plan = {"id": "wt", "tasks": [{"id": "w1", "command": "true"}, {"id": "w2", "command": "true", "deps": ["w1"]}]}
    r, _ = await request(ws, {"op": "write", "path": "mma/tracks/create", "body": json.dumps(plan), "id": 7})
    check("write tracks/create: the track", r.get("ok") is True and r["result"].get("id") == "wt", r)
    check("... on the mount", os.path.exists(os.path.join(M, "mma/tracks/wt/info.json")))

    async def expect_error(msg, status, errno, path, name, written=True):
        r, _ = await request(ws, msg)
        ok = check(name, r.get("id") == msg.get("id") and r.get("ok") is False and "result" not in r and
                   error_ok(r.get("error"), status, errno, path), r)
        if ok and written:
            check(name + ": the same object is last_error", mount_json("last_error") == {"error": r["error"]},
                  mount_json("last_error"))

    await expect_error({"op": "write", "path": "mma/workers/kill", "body": "999", "id": 8}, 404, "ENOENT",
                       "mma/workers/kill", "write: kill an unknown worker is 404 ENOENT")
    await expect_error({"op": "write", "path": "mma/workers/spawn", "body": '{"command":', "id": 9}, 400, "EINVAL",
                       "mma/workers/spawn", "write: bad JSON is 400 EINVAL")
    await expect_error({"op": "write", "path": "mma/dag/mutate", "body": "add_dep w1 w2", "id": 10}, 409, "ELOOP",
                       "mma/dag/mutate", "write: a cycle is 409 ELOOP")
    await expect_error({"op": "write", "path": "mma/tracks/create", "body": json.dumps(plan), "id": 11}, 409, "EEXIST",
                       "mma/tracks/create", "write: a track that exists is 409 EEXIST")
    await expect_error({"op": "write", "path": "mma/workers/kill", "body": str(wid), "id": 12}, 409, "EBUSY",
                       "mma/workers/kill", "write: kill an ended worker is 409 EBUSY")
    await expect_error({"op": "write", "path": "README", "body": "x", "id": 13}, 405, None,
                       "README", "write to a document is refused")
    # a malformed message, not a write: like HTTP's 411, it is not last_error
    await expect_error({"op": "write", "path": "mma/workers/spawn", "id": 14}, 400, "EINVAL",
                       "mma/workers/spawn", "write without a body is 400 EINVAL", written=False)
    r, _ = await request(ws, {"op": "read", "id": 15})
    check("read without a path is 400 EINVAL", r.get("id") == 15 and r.get("ok") is False and
          r["error"]["status"] == 400 and r["error"]["errno"] == "EINVAL", r)
    r, _ = await request(ws, {"op": "write", "path": "mma/pipeline/max_workers", "body": "3", "id": 16})
    check("write a value file (max_workers)", r.get("ok") is True and open(os.path.join(M, "mma/pipeline/max_workers")).read() == "3\n", r)
    check("the connection is still open after the errors", ws.open)
    await ws.close()


async def bad():
    ws = await connect()
    for text, want_id, name in [("not json", None, "not JSON"), ("[1,2]", None, "a JSON array"),
                                ('"op"', None, "a JSON string"), ('{"id":5}', 5, "no op"),
                                ('{"op":"frob","id":6}', 6, "an unknown op"), ('{"op":5,"id":7}', 7, "an op that is not a string"),
                                ('{"op":"subscribe","channels":["nosuch"],"id":8}', 8, "an unknown channel"),
                                ('{"op":"subscribe","channels":"dag","id":9}', 9, "channels not an array"),
                                ('{"op":"subscribe","since":"abc","id":10}', 10, "since not a number"),
                                ('{"op":"subscribe","since":-1,"id":11}', 11, "a negative since"),
                                ('{"op":"subscribe","since":999999999999,"id":12}', 12,
                                 "a since that has not happened yet (as the mount and SSE say)")]:
        r, _ = await request(ws, text)
        check("%s: answered EINVAL (400)%s" % (name, " with its id" if want_id else ""),
              r.get("ok") is False and r.get("id") == want_id and error_ok(r.get("error"), 400, "EINVAL", "") and
              ("id" in r) == (want_id is not None), r)
    check("the connection stays open after bad messages", ws.open)
    r, _ = await request(ws, {"op": "read", "path": "mma/pipeline/status", "id": 99})
    check("... and still answers", r.get("id") == 99 and r.get("ok") is True, r)
    await ws.close()


async def subscribe():
    loop = asyncio.get_running_loop()
    base = await settle()
    # all event channels, from now
    a = await connect()
    r, _ = await request(a, {"op": "subscribe", "id": 1})
    n = r.get("result", {}).get("seq")
    check("subscribe (no channels): ok, from the current seq, every event channel",
          r.get("ok") is True and r.get("id") == 1 and n == base and r["result"].get("channels") == EVENT_CHANNELS, r)
    # a subscriber of dag only, since 0; one of everything since 0
    b = await connect()
    r, _ = await request(b, {"op": "subscribe", "channels": ["dag"], "since": 0, "id": "b"})
    check("subscribe channels [dag] since 0: ok", r.get("ok") is True and r["result"].get("channels") == ["dag"]
          and r["result"].get("seq") == 0, r)
    c = await connect()
    r, _ = await request(c, {"op": "subscribe", "since": 0})
    check("subscribe since 0: ok", r.get("ok") is True, r)

    # events on every channel, made through the mount
    def produce():
        for i in range(3):
            spawn("echo %d" % i)
        mount_write("mma/tracks/create", json.dumps({"id": "st", "tasks": [{"id": "s1", "command": "true"}]}))
        # events whose frames need a 16-bit and a 64-bit length (RFC 6455 5.2)
        for k, n in (("mid", 300), ("wide", 70000)):
            mount_write("mma/tracks/create", json.dumps({"id": k, "title": k[0] * n, "tasks": [{"id": k + "1", "command": "true"}]}))
        mount_write("mma/pipeline/pause", "pause")
        mount_write("mma/pipeline/resume", "resume")
        mount_write("context/inject", json.dumps({"text": "hello", "name": "hi"}))
        w = spawn("sleep 0.2")
        mount_write("mma/workers/%d/usage" % w, "model=m1 in=10 out=20")
    await loop.run_in_executor(None, produce)
    final = await settle()
    got = await events_until(a, final)
    check("live: exactly seq %d..%d, in order, no gap, no duplicate" % (n + 1, final),
          seqs(got) == list(range(n + 1, final + 1)), seqs(got))
    check("live: every event has seq, ts, channel, type, data",
          all(set(e) == {"seq", "ts", "channel", "type", "data"} for e in got), got[:2])
    titles = {e["data"].get("track"): len(e["data"].get("title") or "") for e in got if e["type"] == "track.created"}
    check("live: a 300-byte title and a 70,000-byte one arrive whole, each in its event",
          titles.get("mid") == 300 and titles.get("wide") == 70000, titles)
    check("live: events came on workers, dag, pipeline, context and metrics",
          {e["channel"] for e in got} >= {"workers", "dag", "pipeline", "context", "metrics"}, {e["channel"] for e in got})
    rest = await quiet(a, 0.3)
    check("no telemetry frame for a subscriber of the event channels", not any(f.get("channel") == "telemetry" for f in rest), rest[:1])
    allev = await events_until(c, final)
    check("since 0: exactly 1..%d" % final, seqs(allev) == list(range(1, final + 1)), seqs(allev)[:10])
    want_dag = [e["seq"] for e in allev if e["channel"] == "dag"]
    dag = await events_until(b, want_dag[-1] if want_dag else 1, timeout=3)
    check("channels [dag] since 0: every dag event, nothing else", want_dag and seqs(dag) == want_dag, (seqs(dag), want_dag))
    await b.close()
    await c.close()

    # resume: a client goes away after some events, events go on, it comes back with since
    mid = got[len(got) // 2]["seq"]
    await a.close()
    await loop.run_in_executor(None, lambda: [spawn("true") for _ in range(4)])
    final2 = await settle()
    d = await connect()
    r, _ = await request(d, {"op": "subscribe", "since": mid, "id": 2})
    check("resume: subscribe since %d: ok" % mid, r.get("ok") is True and r["result"]["seq"] == mid, r)
    back = await events_until(d, final2)
    check("resume: exactly %d..%d, no gap, no duplicate" % (mid + 1, final2),
          seqs(back) == list(range(mid + 1, final2 + 1)), seqs(back))
    # a second subscribe adds a channel and keeps the cursor
    r, _ = await request(d, {"op": "subscribe", "channels": ["telemetry"], "id": 3})
    check("subscribing again adds a channel", r.get("ok") is True and r["result"]["channels"] == EVENT_CHANNELS + ["telemetry"]
          and r["result"]["seq"] == final2, r)
    await d.close()

    # unsubscribe stops a channel
    e = await connect()
    r, _ = await request(e, {"op": "subscribe", "channels": ["workers", "dag"], "id": 1})
    r, before = await request(e, {"op": "unsubscribe", "channels": ["workers"], "id": 2})
    check("unsubscribe workers: ok, dag is left", r.get("ok") is True and r["result"]["channels"] == ["dag"], r)
    s0 = state_seq()
    await loop.run_in_executor(None, lambda: [spawn("true") for _ in range(3)])
    await settle()
    # paused, so that the last event is the add_task's (dag), not its worker's
    await loop.run_in_executor(None, lambda: mount_write("mma/pipeline/pause", ""))
    await loop.run_in_executor(None, lambda: mount_write("mma/dag/mutate", '{"op":"add_task","track":"st","task":{"id":"u1","command":"true"}}'))
    final3 = await settle()
    after = [f for f in await events_until(e, final3, timeout=3) if f["seq"] > s0]
    check("after unsubscribe: no workers event", after and not any(f["channel"] == "workers" for f in after), [f["channel"] for f in after])
    check("... while dag events still come", any(f["channel"] == "dag" and f["type"] == "dag.task_added" for f in after), after[:3])
    r, _ = await request(e, {"op": "unsubscribe", "channels": ["dag"], "id": 3})
    check("unsubscribe the last channel: nothing left", r.get("ok") is True and r["result"]["channels"] == [], r)
    await loop.run_in_executor(None, lambda: spawn("true"))
    await settle()
    rest = await quiet(e, 0.5)
    check("... and nothing comes", rest == [], rest[:2])
    await e.close()
    mount_write("mma/pipeline/resume", "")


async def telemetry(hz):
    ws = await connect()
    r, _ = await request(ws, {"op": "subscribe", "channels": ["telemetry"], "id": 1})
    check("subscribe [telemetry]: ok", r.get("ok") is True and r["result"]["channels"] == ["telemetry"], r)
    await quiet(ws, 0.3)
    t0 = time.time()
    frames = await quiet(ws, 2.0)
    dt = time.time() - t0
    tel = [f for f in frames if f.get("channel") == "telemetry"]
    rate = len(tel) / dt
    check("telemetry frames at about --telemetry-hz %d: %.1f/s" % (hz, rate), 0.7 * hz <= rate <= 1.3 * hz, rate)
    check("every frame is telemetry: {channel, ts, data} without a seq",
          tel and len(tel) == len(frames) and all(set(f) == {"channel", "ts", "data"} for f in tel), frames[:1])
    check("a frame carries the telemetry document", all("uptime_s" in f["data"] and "websocket" in f["data"] for f in tel))
    check("the frame's websocket gauges count this client", tel and tel[-1]["data"]["websocket"]["clients"] >= 1, tel[-1:])
    await ws.close()


def burst(n, cmd):
    """The burst of events, in its own process: spawns through the mount;
    prints the slowest mount read seen between them."""
    slowest = 0.0
    spawned = 0
    dropped_at = None
    while spawned < n:
        fd = os.open(os.path.join(M, "mma/workers/spawn"), os.O_WRONLY)
        os.write(fd, cmd.encode())
        os.close(fd)
        spawned += 1
        t = time.time()
        with open(os.path.join(M, "mma/pipeline/status")) as f:
            f.read()
        slowest = max(slowest, time.time() - t)
        if spawned % 50 == 0 and dropped_at is None:
            if mount_json("system/telemetry.json")["websocket"]["clients_dropped"] >= 1:
                dropped_at = spawned
                n = min(n, spawned + 50)   # a little more once the stalled client is out
    print(json.dumps({"spawned": spawned, "slowest_read_s": slowest, "dropped_at": dropped_at}), flush=True)


async def caught_up(reader, got):
    """Once the events settle, lets the reader filling got reach the last; returns its seq."""
    final = await settle_light(10)
    end = time.time() + 10
    while (not got or got[-1]["seq"] < final) and time.time() < end and not reader.done():
        await asyncio.sleep(0.05)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    return final


def close_of(frames):
    """A raw client's frames: the text ones parsed, and its close frame's code and reason."""
    texts = [json.loads(p) for op, p in frames if op == 1]
    close = [p for op, p in frames if op == 8]
    code = struct.unpack(">H", close[0][:2])[0] if close and len(close[0]) >= 2 else None
    reason = close[0][2:].decode(errors="replace") if close else ""
    return texts, code, reason


async def stall(cmdlen, maxn):
    # the stalled client: a raw socket with a small receive buffer that
    # subscribes to everything and then does not read
    s, st, _, buf = raw_handshake({"Authorization": "Bearer " + TOKEN}, rcvbuf=4096)
    check("the stalled client's handshake", st == 101, st)
    raw_send(s, json.dumps({"op": "subscribe", "id": "stall"}))
    healthy = await connect()
    r, _ = await request(healthy, {"op": "subscribe", "id": 1})
    n = r["result"]["seq"]
    t0 = time.time()
    proc = await asyncio.create_subprocess_exec(sys.executable, __file__, "burst", str(maxn), "true # " + "x" * cmdlen,
                                                stdout=asyncio.subprocess.PIPE)
    got = []
    reader = asyncio.ensure_future(events_until(healthy, 1 << 62, timeout=40, into=got))
    out, _ = await asyncio.wait_for(proc.communicate(), 40)
    b = json.loads(out or b"{}")
    check("the burst ran (%s spawns, %.1f s)" % (b.get("spawned"), time.time() - t0), proc.returncode == 0 and b.get("spawned"), b)
    check("the mount kept answering during the burst (slowest read %.3f s)" % b.get("slowest_read_s", -1),
          0 <= b.get("slowest_read_s", 99) < 1.0, b)
    final = await caught_up(reader, got)
    got_seqs = seqs(got)
    check("the healthy client got every event of the burst, in order: %d..%d" % (n + 1, final),
          got_seqs == list(range(n + 1, final + 1)),
          "%d events, first %s, last %s" % (len(got_seqs), got_seqs[:2], got_seqs[-2:]))
    check("the healthy client is still connected", healthy.open,
          "closed: %s %s" % (healthy.close_code, healthy.close_reason))
    try:
        r, _ = await request(healthy, {"op": "read", "path": "mma/pipeline/status", "id": "still"})
    except websockets.ConnectionClosed as e:
        r = repr(e)
    check("... and still answered", isinstance(r, dict) and r.get("id") == "still" and r.get("ok") is True, r)
    # the daemon counted the stalled client as dropped
    end = time.time() + 5
    tel = mount_json("system/telemetry.json")["websocket"]
    while tel["clients_dropped"] < 1 and time.time() < end:
        await asyncio.sleep(0.05)
        tel = mount_json("system/telemetry.json")["websocket"]
    check("system/telemetry.json: websocket.clients_dropped >= 1 (%d)" % tel["clients_dropped"], tel["clients_dropped"] >= 1, tel)
    # the stalled client reads at last: frames, then a close frame 1013
    frames, why = raw_frames(s, buf, 5)
    s.close()
    texts, code, reason = close_of(frames)
    ack = [t for t in texts if t.get("id") == "stall"]
    ev = [t["seq"] for t in texts if "seq" in t]
    check("the stalled client was subscribed", ack and ack[0].get("ok") is True, texts[:1])
    check("the stalled client finds a close frame with code 1013", code == 1013, (why, code, reason, len(frames)))
    last = int(reason.rsplit(" ", 1)[-1]) if reason and reason.rsplit(" ", 1)[-1].isdigit() else None
    check("its reason names the last seq sent (%r)" % reason, last is not None and ev and last == ev[-1], (reason, ev[-3:]))
    n0 = ack[0]["result"]["seq"] if ack and isinstance(ack[0].get("result"), dict) else n
    check("it was sent %d events in order, no gap, and fewer than the burst" % len(ev),
          ev == list(range(n0 + 1, n0 + 1 + len(ev))) and ev and ev[-1] < final, (ev[:3], ev[-3:], final))
    # it resumes from there
    if last:
        again = await connect()
        r, _ = await request(again, {"op": "subscribe", "since": last, "id": "resume"})
        rest = await events_until(again, final, timeout=10)
        check("resuming with since=%d gets exactly %d..%d" % (last, last + 1, final),
              r.get("ok") is True and seqs(rest) == list(range(last + 1, final + 1)), seqs(rest)[:3])
        await again.close()
    await healthy.close()
    end = time.time() + 3
    tel = mount_json("system/telemetry.json")["websocket"]
    while tel["clients"] > 0 and time.time() < end:
        await asyncio.sleep(0.1)
        tel = mount_json("system/telemetry.json")["websocket"]
    check("every client, the dropped one too, is let go (clients %d)" % tel["clients"], tel["clients"] == 0, tel)


async def idle(window):
    # a client with ordinary socket buffers that subscribes and never reads:
    # what its socket holds unsent counts, and past --ws-queue-soft for the
    # whole window it is closed; a healthy client misses nothing meanwhile
    s, st, _, buf = raw_handshake({"Authorization": "Bearer " + TOKEN})
    check("the idle client's handshake", st == 101, st)
    raw_send(s, json.dumps({"op": "subscribe", "id": "idle"}))
    t0 = time.time()
    healthy = await connect()
    r, _ = await request(healthy, {"op": "subscribe", "id": 1})
    n = r["result"]["seq"]
    got = []
    reader = asyncio.ensure_future(events_until(healthy, 1 << 62, timeout=40, into=got))
    proc = await asyncio.create_subprocess_exec(sys.executable, __file__, "burst", "4000", "true # " + "x" * 2000,
                                                stdout=asyncio.subprocess.PIPE)
    dropped_at = None
    while proc.returncode is None and time.time() < t0 + 40:
        if dropped_at is None and mount_json("system/telemetry.json")["websocket"]["clients_dropped"] >= 1:
            dropped_at = time.time() - t0
        try:
            await asyncio.wait_for(proc.wait(), 0.05)
        except asyncio.TimeoutError:
            pass
    out, _ = await asyncio.wait_for(proc.communicate(), 40)
    check("the idle client is closed, not before the %d s window and within 10 s of it (%s s)" % (window, dropped_at),
          dropped_at is not None and window <= dropped_at <= window + 10, out)
    final = await caught_up(reader, got)
    check("the healthy client got every event meanwhile, in order: %d..%d" % (n + 1, final),
          seqs(got) == list(range(n + 1, final + 1)), (len(got), seqs(got)[-2:]))
    check("the healthy client is still connected", healthy.open, healthy.close_code)
    await healthy.close()
    frames, why = raw_frames(s, buf, 5)
    s.close()
    texts, code, reason = close_of(frames)
    ev = [t["seq"] for t in texts if "seq" in t]
    check("the idle client finds a close frame 1013 naming the last seq it was sent (%r)" % reason,
          code == 1013 and ev and reason.endswith(" %d" % ev[-1]), (why, code, reason, ev[-1:]))
    check("what it was sent is in order, no gap (%d events)" % len(ev), ev == list(range(ev[0], ev[0] + len(ev))) if ev else False)


async def logs():
    """a worker's log of 1.5 MB (multi-byte characters too) read in pieces"""
    wid = spawn("python3 -c 'import sys; sys.stdout.write(\"\\u00e9\" * 500000 + \"x\" * 500000)'")
    end = time.time() + 10
    while time.time() < end and open(os.path.join(M, "mma/workers/%d/status" % wid)).read() != "exited\n":
        await asyncio.sleep(0.05)
    want = open(os.path.join(M, "mma/workers/%d/log" % wid), "rb").read()
    ws = await connect()
    got, offset, pieces, biggest, sizes = b"", 0, 0, 0, set()
    while offset is not None and pieces < 100:
        r, _ = await request(ws, {"op": "read", "path": "mma/workers/%d/log" % wid, "offset": offset, "id": pieces})
        if not r.get("ok"):
            check("a log piece is read", False, str(r)[:300])
            break
        piece = r["result"].encode()
        got += piece
        biggest = max(biggest, len(piece))
        sizes.add(r.get("size"))
        offset = r.get("next")
        pieces += 1
    check("a 1.5 MB log comes whole, in %d pieces of at most 256 KiB, cut between characters" % pieces,
          got == want and pieces > 1 and biggest <= 256 * 1024, (len(got), len(want), pieces, biggest))
    check("each piece tells the log's size", sizes == {len(want)}, sizes)
    r, _ = await request(ws, {"op": "read", "path": "mma/workers/%d/log" % wid, "offset": len(want) + 1, "id": "x"})
    check("an offset past the end is 400 EINVAL", r.get("ok") is False and error_ok(r.get("error"), 400, "EINVAL", "mma/workers/%d/log" % wid), r)
    await ws.close()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "burst":
        burst(int(sys.argv[2]), sys.argv[3])
    elif mode == "stall":
        asyncio.run(stall(int(sys.argv[2]), int(sys.argv[3])))
    elif mode in ("telemetry", "idle"):
        asyncio.run(globals()[mode](int(sys.argv[2])))
    else:
        asyncio.run(globals()[mode]())
EOF

# py MODE [ARGS]: runs one mode of ws.py (bounded) and counts its checks.
py() {
	local out rc=0
	out=$(M=$M WSURL=$WSURL TOKEN=$TOKEN HTTP_PORT=$HTTP_PORT WS_PORT=$WS_PORT \
		timeout 50 "$PY" "$WSPY" "$@" 2>"$T/py.err") || rc=$?
	relay_checks <<<"$out"
	[ "$rc" -eq 0 ] || fail "ws.py $1 exited $rc" "$(tail -5 "$T/py.err" | tr '\n' ' ')"
}

py handshake
py ops
py bad
py subscribe
py telemetry 20
py logs
check "the daemon is up after the protocol tests" kill -0 "$DAEMON_PID"

# --- a stalled client on a daemon that lets clients lag 64 KiB ---
# The events are big (spawns with 20 kB command lines) so that the kernel's
# socket buffers, several MB on loopback, fill before the daemon's bound.
MAIN_M=$M
orchfs_start_api --max-workers 4 --ws-queue-max 65536
py stall 20000 800
py logs   # pieces of 256 KiB on a daemon whose clients may lag only 64 KiB
check "the stalled daemon's mount still answers" status_is "$M/mma/pipeline/status" running

# --- an idle client on a daemon whose clients may lag 256 KiB for 2 s ---
orchfs_start_api --max-workers 4 --ws-queue-max 67108864 --ws-queue-soft 262144 --ws-queue-window 2
py idle 2
check "the idle daemon's mount still answers" status_is "$M/mma/pipeline/status" running
check "the first daemon's mount still answers" status_is "$MAIN_M/mma/pipeline/status" running

finish
