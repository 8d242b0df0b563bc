"""Tests of orchfs_client against a LIVE daemon.

Run by tests/integration/test_python_client.sh, which mounts an orchfs with
its HTTP listener on a free port and exports:
  ORCHFS_API         the HTTP base URL
  ORCHFS_TOKEN_FILE  the daemon's token file
  ORCHFS_MOUNT       the mount, to check effects through the other transport
Every network call has a timeout (the client's, 5 s) and every wait is
bounded, so a wedged daemon fails the test instead of hanging it.
"""

import contextlib
import io
import json
import os
import re
import select
import socket
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from orchfs_client import OrchfsClient, OrchfsError  # noqa: E402

API = os.environ.get("ORCHFS_API")
MOUNT = os.environ.get("ORCHFS_MOUNT")
TOKEN_FILE = os.environ.get("ORCHFS_TOKEN_FILE")
TIMEOUT = 5.0

# The prices lib.sh gives every daemon, in micro-dollars per Mtok.
PRICE = {"m1": {"in": 3000000, "out": 15000000, "cache_read": 300000, "cache_write": 3750000},
         "m2": {"in": 800000, "out": 4000000, "cache_read": 0, "cache_write": 0}}

_ids = iter(range(1, 10**6))


def uid(prefix):
    """A fresh task/track id."""
    return "%s%d" % (prefix, next(_ids))


def mount_read(path):
    with open(os.path.join(MOUNT, path), "r", encoding="utf-8") as f:
        return f.read()


def mount_json(path):
    return json.loads(mount_read(path))


def wait_until(fn, timeout=5.0, what="condition"):
    """Polls fn every 50 ms until it returns a true value; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = fn()
        except (OrchfsError, OSError, ValueError):
            v = None
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("not true within %ss: %s" % (timeout, what))
        time.sleep(0.05)


def micro(usd):
    return int(round(usd * 1e6))


def b_spawned_seq(evs, wid):
    """The seq of worker wid's worker.spawned event in evs."""
    return next(e["seq"] for e in evs if e["type"] == "worker.spawned" and e["data"]["id"] == wid)


def cgroup_frozen(pid):
    """Is process pid in a frozen cgroup (a freeze, with workers in cgroups)?"""
    try:
        with open("/proc/self/mountinfo") as f:
            root = next(l.split()[4] for l in f if " - cgroup2 " in l)
        with open("/proc/%s/cgroup" % pid) as f:
            path = next(l[3:].strip() for l in f if l.startswith("0::"))
        with open(root + path + "/cgroup.events") as f:
            return "frozen 1" in f.read().splitlines()
    except (OSError, StopIteration):
        return False


def group_states(pgid):
    """The states of the processes in process group pgid (T for a frozen one)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                out.append("T" if cgroup_frozen(d) else fields[0])
    return out


def proc_state(pid):
    """The one-letter state of a process (R, S, T ...; T for a frozen one),
    or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
    return "T" if cgroup_frozen(pid) else state


class DropProxy:
    """A TCP proxy in front of the daemon that can cut its connections.

    Each connection carries one request (urllib sends Connection: close); the
    request head is kept (to check Last-Event-ID) and its Host line is
    rewritten to the daemon's own, which the daemon checks.
    """

    def __init__(self, target):
        host, port = target.split("//", 1)[1].split(":")
        self.target = (host, int(port.rstrip("/")))
        self.heads = []
        self.live = []
        self.stalled = set()
        self.lock = threading.Lock()
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.url = "http://127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        u = None
        try:
            c.settimeout(TIMEOUT)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(4096)
                if not chunk:
                    return
                data += chunk
            head, rest = data.split(b"\r\n\r\n", 1)
            head = re.sub(rb"(?im)^host:[^\r\n]*", b"Host: %s:%d" % (
                self.target[0].encode(), self.target[1]), head)
            with self.lock:
                self.heads.append(head.decode("latin-1"))
            u = socket.create_connection(self.target, timeout=TIMEOUT)
            u.sendall(head + b"\r\n\r\n" + rest)
            with self.lock:
                self.live.append((c, u))
            c.settimeout(None)
            u.settimeout(None)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with self.lock:
                    stalled = id(c) in self.stalled
                r, _, _ = select.select([c] if stalled else [c, u], [], [], 0.05)
                for s in r:
                    # under the lock: once stall_all() returns, nothing more
                    # of the daemon's is forwarded
                    with self.lock:
                        if s is u and id(c) in self.stalled:
                            continue
                        chunk = s.recv(65536)
                        if not chunk:
                            return
                        (u if s is c else c).sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (c, u):
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.close()

    def drop_all(self):
        """Cuts every proxied connection: the client sees its stream end."""
        with self.lock:
            live, self.live = self.live, []
        for c, u in live:
            for s in (c, u):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stall_all(self):
        """Stops forwarding the daemon's bytes on every proxied connection,
        which stays open: the client sees a silent stream."""
        with self.lock:
            self.stalled.update(id(c) for c, _ in self.live)

    def stop_accepting(self):
        """Closes the listener: new connections are refused. (shutdown()
        first: on Linux, close() alone leaves the thread blocked in accept()
        holding the listening socket open.)"""
        with contextlib.suppress(OSError):
            self.lsock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.lsock.close()

    def close(self):
        self.stop_accepting()
        self.drop_all()


@unittest.skipUnless(API and MOUNT and TOKEN_FILE,
                     "needs a live daemon: ORCHFS_API, ORCHFS_TOKEN_FILE, ORCHFS_MOUNT")
class OrchfsClientTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = OrchfsClient(API, token_file=TOKEN_FILE, timeout=TIMEOUT)

    # --- helpers ---

    def spawn_sleeper(self, **fields):
        """A `sleep 30` worker, killed (KILL) at the end of the test."""
        w = self.c.spawn_worker("sleep 30", **fields)
        self.addCleanup(self._kill_quietly, w["id"])
        return w

    def _kill_quietly(self, wid):
        with contextlib.suppress(OrchfsError):
            self.c.kill_worker(wid, signal="KILL", grace_s=0)

    def worker_status(self, wid):
        return self.c.get_worker(wid)["status"]

    def assertOrchfsError(self, status, errno, fn, *args, **kwargs):
        with self.assertRaises(OrchfsError) as cm:
            fn(*args, **kwargs)
        e = cm.exception
        self.assertEqual((e.status, e.errno), (status, errno), str(e))
        self.assertTrue(e.message, "an error has a message")
        return e

    def collect(self, gen, stop, limit=200):
        """Events from gen until stop(ev) is true (that one included)."""
        out = []
        for ev in gen:
            out.append(ev)
            if stop(ev) or len(out) >= limit:
                break
        return out

    # --- construction ---

    def test_client_from_environment(self):
        c = OrchfsClient(timeout=TIMEOUT)   # ORCHFS_API and ORCHFS_TOKEN_FILE
        self.assertEqual(c.base_url, API.rstrip("/"))
        with open(TOKEN_FILE) as f:
            self.assertEqual(c.token, f.read().strip())
        self.assertIn(c.read("mma/pipeline/status"), ("running\n", "paused\n", "frozen\n"))

    def test_client_token_argument_and_api_suffix(self):
        with open(TOKEN_FILE) as f:
            token = f.read().strip()
        c = OrchfsClient(API + "/api/", token=token, timeout=TIMEOUT)
        self.assertIsInstance(c.get_state(), dict)

    def test_bad_token_is_401(self):
        c = OrchfsClient(API, token="0" * 64, timeout=TIMEOUT)
        e = self.assertOrchfsError(401, "EACCES", c.get_state)
        self.assertEqual(e.path, "state")
        self.assertOrchfsError(401, "EACCES", c.spawn_worker, "true")
        with self.assertRaises(OrchfsError) as cm:
            next(c.events(since=0))
        self.assertEqual(cm.exception.status, 401)
        with tempfile.NamedTemporaryFile("w", suffix=".token") as tf:
            tf.write("not-the-token\n")
            tf.flush()
            c = OrchfsClient(API, token_file=tf.name, timeout=TIMEOUT)
            self.assertOrchfsError(401, "EACCES", c.read, "mma/workers")

    def test_no_token_is_401(self):
        old = os.environ.pop("ORCHFS_TOKEN_FILE", None)
        try:
            c = OrchfsClient(API, timeout=TIMEOUT)
        finally:
            if old is not None:
                os.environ["ORCHFS_TOKEN_FILE"] = old
        self.assertIsNone(c.token)
        self.assertOrchfsError(401, "EACCES", c.get_workers)

    def test_connection_refused_is_status_0_eio(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()   # nothing listens there now
        c = OrchfsClient("http://127.0.0.1:%d" % port, token="x", timeout=TIMEOUT)
        e = self.assertOrchfsError(0, "EIO", c.read, "state")
        self.assertIn("refused", e.message.lower())
        self.assertOrchfsError(0, "EIO", c.write, "mma/workers/spawn", "true")

    def test_no_base_url_is_value_error(self):
        old = os.environ.pop("ORCHFS_API", None)
        try:
            with self.assertRaises(ValueError):
                OrchfsClient(token="x")
        finally:
            if old is not None:
                os.environ["ORCHFS_API"] = old

    # --- read and write ---

    def test_read_text_json_and_errors(self):
        status = self.c.read("mma/pipeline/status")
        self.assertIsInstance(status, str)
        self.assertEqual(status, mount_read("mma/pipeline/status"))
        for p in ("mma/pipeline/max_workers", "README"):
            self.assertEqual(self.c.read(p), mount_read(p), p)
        self.assertEqual(self.c.read("/api/mma/pipeline/status"), status)
        tracks = self.c.read("mma/tracks")
        self.assertIsInstance(tracks, dict)
        self.assertEqual(tracks, self.c.read("mma/tracks.json"))
        e = self.assertOrchfsError(404, "ENOENT", self.c.read, "no/such/node")
        self.assertEqual(e.path, "no/such/node")
        e = self.assertOrchfsError(405, "EACCES", self.c.read, "mma/workers/spawn")
        self.assertEqual(e.path, "mma/workers/spawn")

    def test_write_bodies_and_errors(self):
        old = self.c.read("mma/pipeline/max_workers").strip()
        self.addCleanup(self.c.write, "mma/pipeline/max_workers", old)
        r = self.c.write("mma/pipeline/max_workers", "7")          # str
        self.assertEqual(r["max_workers"], 7)
        self.assertEqual(mount_read("mma/pipeline/max_workers").strip(), "7")
        r = self.c.write("mma/pipeline/max_workers", b"5\n")       # bytes
        self.assertEqual(r["max_workers"], 5)
        self.assertEqual(mount_read("mma/pipeline/max_workers").strip(), "5")
        w = self.c.write("mma/workers/spawn", {"command": "echo via-write"})   # dict
        self.assertIsInstance(w["id"], int)
        wait_until(lambda: self.worker_status(w["id"]) == "exited", what="write-spawned worker exits")
        e = self.assertOrchfsError(400, "EINVAL", self.c.write, "mma/workers/spawn", "{bad")
        self.assertEqual(e.path, "mma/workers/spawn")
        self.assertEqual(mount_json("last_error")["error"]["errno"], "EINVAL")
        self.assertOrchfsError(405, "EACCES", self.c.write, "mma/pipeline/status", "x")

    # --- reads by name ---

    def test_get_state(self):
        st = self.c.get_state()
        for key in ("seq", "pipeline", "tracks", "tasks", "workers", "context", "metrics",
                    "telemetry"):
            self.assertIn(key, st)
        self.assertIsInstance(st["seq"], int)
        m = mount_json("state.json")
        self.assertEqual(set(m), set(st))
        self.assertGreaterEqual(m["seq"], st["seq"])
        self.assertEqual(self.c.read("gui/state").keys(), st.keys())

    def test_get_telemetry(self):
        t = self.c.get_telemetry()
        self.assertIn("uptime_s", t)
        self.assertIn("loop", t)
        self.assertGreater(t["uptime_s"], 0)
        self.assertEqual(set(mount_json("system/telemetry.json")), set(t))

    def test_get_workers_and_worker(self):
        before = self.c.get_workers()
        w = self.spawn_sleeper()
        self.assertEqual(w["status"], "running")
        after = self.c.get_workers()
        self.assertEqual(after["total"], before["total"] + 1)
        self.assertIn(w["id"], [x["id"] for x in after["workers"]])
        self.assertIn(w["id"], [x["id"] for x in mount_json("mma/workers.json")["workers"]])
        got = self.c.get_worker(w["id"])
        self.assertEqual((got["id"], got["command"], got["status"], got["pid"]),
                         (w["id"], "sleep 30", "running", w["pid"]))
        self.assertEqual(mount_json("mma/workers/%d/info.json" % w["id"])["pid"], w["pid"])
        self.assertEqual(mount_read("mma/workers/%d/status" % w["id"]), "running\n")
        self.assertOrchfsError(404, "ENOENT", self.c.get_worker, 999999)

    # --- control ---

    def test_spawn_worker_fields(self):
        track = uid("pysp")
        self.c.create_track({"id": track, "title": "spawn fields", "tasks": []})
        with tempfile.TemporaryDirectory() as cwd:
            w = self.c.spawn_worker('echo "$PYCLIENT_X $ORCHFS_TRACK $ORCHFS_WORKER_ID"; pwd',
                                    env={"PYCLIENT_X": "hello"}, cwd=cwd, model="m1",
                                    track=track, task=None)
            self.assertEqual((w["track"], w["model"], w["cwd"]), (track, "m1", cwd))
            wait_until(lambda: self.worker_status(w["id"]) == "exited", what="worker exits")
            log = self.c.read("mma/workers/%d/log" % w["id"])
            self.assertEqual(log, "hello %s %d\n%s\n" % (track, w["id"], cwd))
            self.assertEqual(mount_read("mma/workers/%d/log" % w["id"]), log)
        info = mount_json("mma/workers/%d/info.json" % w["id"])
        self.assertEqual((info["status"], info["exit_code"], info["track"]), ("exited", 0, track))
        # a task's attempt: task names an existing task that is not running
        plan = {"id": uid("pyst"), "tasks": [{"id": uid("pyt"), "command": "true"}]}
        tid = plan["tasks"][0]["id"]
        self.c.pause_pipeline()
        try:
            self.c.create_track(plan)
            w = self.c.spawn_worker("echo by-hand", task=tid)
            self.assertEqual((w["task"], w["track"]), (tid, plan["id"]))
        finally:
            self.c.resume_pipeline()
        wait_until(lambda: mount_read("mma/tasks/%s/status" % tid).strip() == "done",
                   what="the hand-run task is done")
        self.assertOrchfsError(400, "EINVAL", self.c.spawn_worker, "true", bogus=1)
        self.assertOrchfsError(404, "ENOENT", self.c.spawn_worker, "true", track="no-such")

    def test_kill_worker(self):
        w = self.spawn_sleeper()
        r = self.c.kill_worker(w["id"], signal="TERM", grace_s=1)
        self.assertEqual(r["id"], w["id"])
        wait_until(lambda: self.worker_status(w["id"]) == "killed", what="worker killed")
        self.assertEqual(mount_read("mma/workers/%d/status" % w["id"]), "killed\n")
        info = self.c.get_worker(w["id"])
        self.assertEqual(info["signal"], "TERM")
        wait_until(lambda: proc_state(w["pid"]) in (None, "Z"), what="the process is gone")
        self.assertOrchfsError(409, "EBUSY", self.c.kill_worker, w["id"])
        self.assertOrchfsError(404, "ENOENT", self.c.kill_worker, 999999)
        w2 = self.spawn_sleeper()
        self.c.kill_worker(w2["id"])   # defaults: TERM, the daemon's grace
        wait_until(lambda: self.worker_status(w2["id"]) == "killed", what="default kill")
        w3 = self.spawn_sleeper()
        self.c.kill_worker(w3["id"], signal=9)
        wait_until(lambda: self.worker_status(w3["id"]) == "killed", what="kill by number")
        self.assertEqual(self.c.get_worker(w3["id"])["signal"], "KILL")

    def test_pause_freeze_resume(self):
        self.addCleanup(self.c.resume_pipeline)
        r = self.c.pause_pipeline()
        self.assertEqual(r["status"], "paused")
        self.assertEqual(mount_read("mma/pipeline/status"), "paused\n")
        # paused: a ready task does not start
        track, tid = uid("pyp"), uid("pyp")
        self.c.create_track({"id": track, "tasks": [{"id": tid, "command": "true"}]})
        time.sleep(0.4)
        self.assertEqual(mount_read("mma/tasks/%s/status" % tid), "ready\n")
        self.assertEqual(self.c.read("mma/tasks/%s" % tid)["workers"], [])
        r = self.c.resume_pipeline()
        self.assertEqual(r["status"], "running")
        self.assertEqual(self.c.read("mma/pipeline/status"), "running\n")
        wait_until(lambda: mount_read("mma/tasks/%s/status" % tid) == "done\n",
                   what="after resume the task runs")
        # frozen: running workers are stopped, and continued on resume. The
        # worker counts into a file; frozen, the count stands still. (Its
        # sh may show D, not T: dash vforks `sleep`, and a parent waiting
        # on a stopped vfork child sleeps uninterruptibly.)
        with tempfile.TemporaryDirectory() as d:
            counter = os.path.join(d, "n")
            w = self.c.spawn_worker('i=0; while :; do i=$((i+1)); echo $i > "$F.tmp"; '
                                    'mv "$F.tmp" "$F"; sleep 0.02; done', env={"F": counter})
            self.addCleanup(self._kill_quietly, w["id"])

            def count():
                with open(counter) as f:
                    return int(f.read() or 0)
            wait_until(lambda: os.path.exists(counter) and count() > 2, what="the worker counts")
            r = self.c.pause_pipeline(freeze=True)
            self.assertEqual(r["status"], "frozen")
            self.assertEqual(mount_read("mma/pipeline/status"), "frozen\n")
            time.sleep(0.1)
            n = count()
            wait_until(lambda: "T" in group_states(w["pid"]), what="the group is stopped")
            time.sleep(0.4)
            self.assertEqual(count(), n, "a frozen worker makes no progress")
            self.assertFalse({"R", "S"} & set(group_states(w["pid"])), group_states(w["pid"]))
            self.assertEqual(self.worker_status(w["id"]), "running")
            self.c.resume_pipeline()
            self.assertEqual(mount_read("mma/pipeline/status"), "running\n")
            wait_until(lambda: count() > n + 2, what="a resumed worker goes on")
            self.assertNotIn("T", group_states(w["pid"]))
            self.c.kill_worker(w["id"], signal="KILL")
            wait_until(lambda: self.worker_status(w["id"]) == "killed", what="counter killed")

    def test_inject_context_and_get_context_state(self):
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write("def alpha(x):\n    return x\n\nclass Beta:\n    def gamma(self):\n        pass\n")
            src = f.name
        self.addCleanup(os.unlink, src)
        n_file, n_text, n_skel = uid("pyctx"), uid("pytext"), uid("pyskel")
        e = self.c.inject_context(path=src, name=n_file)
        self.assertEqual((e["name"], e["kind"], e["source"], e["status"]),
                         (n_file, "file", src, "fresh"))
        e = self.c.inject_context(text="some words for the prompt", name=n_text)
        self.assertEqual((e["name"], e["kind"]), (n_text, "text"))
        e = self.c.inject_context(path=src, name=n_skel, kind="skeleton")
        self.assertEqual(e["kind"], "skeleton")
        st = self.c.get_context_state()
        by = {x["name"]: x for x in st["entries"]}
        for n in (n_file, n_text, n_skel):
            self.assertIn(n, by)
        self.assertEqual(by[n_file]["bytes"], os.path.getsize(src))
        self.assertEqual(by[n_text]["kind"], "text")
        self.assertEqual(set(x["name"] for x in mount_json("context/state.json")["entries"]),
                         set(by))
        with open(src) as f:
            self.assertEqual(mount_read("context/files/" + n_file), f.read())
        self.assertEqual(mount_read("context/files/" + n_text), "some words for the prompt")
        self.assertIn("alpha", mount_read("context/files/" + n_skel))
        self.assertEqual(self.c.read("context/files/" + n_text), "some words for the prompt")
        self.assertOrchfsError(400, "EINVAL", self.c.inject_context)
        self.c.inject_context(text="again", name=n_text)   # the same name replaces
        self.assertEqual(mount_read("context/files/" + n_text), "again")

    def test_mutate_dag(self):
        track = uid("pyd")
        p, q, r = uid("pdp"), uid("pdq"), uid("pdr")
        self.c.create_track({"id": track, "tasks": [
            {"id": p, "command": "sleep 30"},
            {"id": q, "command": "true", "deps": [p]},
            {"id": r, "command": "true", "deps": [q]}]})
        wait_until(lambda: mount_read("mma/tasks/%s/status" % p) == "running\n", what="p runs")
        self.addCleanup(self._cancel_quietly, p)
        # a cycle (dag.dot's direction: r -> p -> q -> r), refused with ELOOP; atomic
        e = self.assertOrchfsError(409, "ELOOP", self.c.mutate_dag, [
            {"op": "hold", "task": r}, {"op": "add_dep", "task": p, "dep": r}])
        self.assertEqual(e.path, "mma/dag/mutate")
        self.assertIn("cycle", e.message)
        self.assertEqual(mount_read("mma/tasks/%s/status" % r), "blocked\n", "hold not applied")
        self.assertEqual(mount_read("mma/tasks/%s/deps" % p), "")
        last = mount_json("last_error")["error"]
        self.assertEqual((last["errno"], last["status"], last["path"]),
                         ("ELOOP", 409, "mma/dag/mutate"))
        self.assertOrchfsError(409, "ELOOP", self.c.mutate_dag, "add_dep %s %s" % (p, q))
        self.assertOrchfsError(409, "ELOOP", self.c.mutate_dag,
                               {"op": "add_dep", "task": p, "dep": p})
        # line form, two ops in one write
        self.c.mutate_dag("hold %s\nskip %s\n" % (r, q))
        self.assertEqual(mount_read("mma/tasks/%s/status" % q), "skipped\n")
        self.assertEqual(mount_read("mma/tasks/%s/status" % r), "held\n")
        # a list of op dicts
        self.c.mutate_dag([{"op": "release", "task": r}, {"op": "cancel", "task": p}])
        wait_until(lambda: mount_read("mma/tasks/%s/status" % r) == "done\n", what="r runs")
        wait_until(lambda: self.c.read("mma/tasks/%s/status" % p) == "killed\n", what="p killed")
        edges = self.c.read("mma/dag")["edges"]
        self.assertIn({"from": p, "to": q}, edges)
        self.assertIn({"from": q, "to": r}, edges)
        self.assertNotIn({"from": r, "to": p}, edges)
        self.assertOrchfsError(404, "ENOENT", self.c.mutate_dag, "skip no-such-task")

    def _cancel_quietly(self, task):
        with contextlib.suppress(OrchfsError):
            self.c.mutate_dag({"op": "cancel", "task": task})

    def test_create_track(self):
        tid = uid("pyc")
        a, b = uid("pca"), uid("pcb")
        t = self.c.create_track({"id": tid, "title": "from python", "budget_usd": 2.5,
                                 "tasks": [{"id": a, "command": "true"},
                                           {"id": b, "command": "echo b", "deps": [a],
                                            "model": "m2", "priority": 3}]})
        self.assertEqual((t["id"], t["title"], t["budget_usd"], t["task_count"]),
                         (tid, "from python", 2.5, 2))
        self.assertEqual(sorted(x["id"] for x in t["tasks"]), sorted([a, b]))
        info = self.c.read("mma/tracks/" + tid)
        self.assertEqual(info["id"], tid)
        self.assertEqual(mount_json("mma/tracks/%s/info.json" % tid)["title"], "from python")
        self.assertEqual(mount_read("mma/tasks/%s/deps" % b), a + "\n")
        self.assertIn(tid, [x["id"] for x in self.c.read("mma/tracks")["tracks"]])
        wait_until(lambda: mount_read("mma/tracks/%s/status" % tid) == "done\n",
                   what="the track is done")
        self.assertEqual(self.c.read("mma/tracks/%s/status" % tid), "done\n")
        self.assertOrchfsError(409, "EEXIST", self.c.create_track, {"id": tid, "tasks": []})
        self.assertOrchfsError(400, "EINVAL", self.c.create_track, {"id": "Bad Id!", "tasks": []})

    def test_report_usage_adds_up(self):
        track = uid("pyu")
        self.c.create_track({"id": track, "tasks": []})
        w = self.spawn_sleeper(track=track, model="m1")
        before = self.c.get_financial_metrics()["total"]
        r1 = self.c.report_usage(w["id"], model="m1", input_tokens=1000, output_tokens=200,
                                 cache_read_tokens=500, cache_write_tokens=40)
        self.assertEqual((r1["input_tokens"], r1["reports"]), (1000, 1))
        r2 = self.c.report_usage(w["id"], model="m2", input_tokens=3000, output_tokens=100)
        r3 = self.c.report_usage(w["id"], model="m1", input_tokens=1, output_tokens=1)
        self.assertEqual(r3["reports"], 3)
        self.assertEqual(r2["models"]["m2"]["input_tokens"], 3000)

        def cost(m, i, o, cr=0, cw=0):   # micro-dollars, exact
            pr = PRICE[m]
            pico = i * pr["in"] + o * pr["out"] + cr * pr["cache_read"] + cw * pr["cache_write"]
            return (pico + 500000) // 1000000
        want = {"input_tokens": 4001, "output_tokens": 301, "cache_read_tokens": 500,
                "cache_write_tokens": 40, "reports": 3}
        want_cost = cost("m1", 1001, 201, 500, 40) + cost("m2", 3000, 100)
        fin = self.c.get_financial_metrics()
        for doc in (fin["workers"][str(w["id"])], fin["tracks"][track],
                    self.c.get_worker(w["id"])["usage"],
                    mount_json("mma/workers/%d/usage" % w["id"]),
                    mount_json("metrics/financial.json")["workers"][str(w["id"])]):
            for k, v in want.items():
                self.assertEqual(doc[k], v, k)
            self.assertEqual(micro(doc["cost_usd"]), want_cost)
        self.assertEqual(micro(fin["workers"][str(w["id"])]["models"]["m1"]["cost_usd"]),
                         cost("m1", 1001, 201, 500, 40))
        for k, v in want.items():
            self.assertEqual(fin["total"][k] - before[k], v, "total " + k)
        self.assertEqual(micro(fin["total"]["cost_usd"]) - micro(before["cost_usd"]), want_cost)
        self.assertOrchfsError(400, "EINVAL", self.c.report_usage, w["id"], model="m1",
                               input_tokens=-5, output_tokens=1)
        self.assertOrchfsError(404, "ENOENT", self.c.report_usage, 999999, model="m1",
                               input_tokens=1, output_tokens=1)

    # --- events ---

    def test_events_of_a_worker_in_order_and_resume(self):
        seq0 = self.c.get_state()["seq"]
        w = self.c.spawn_worker("echo evented")
        wid = w["id"]
        evs = self.collect(self.c.events(since=seq0, channels=["workers"], timeout=TIMEOUT),
                           lambda e: e.get("type") == "worker.exited" and e["data"]["id"] == wid)
        seqs = [e["seq"] for e in evs]
        self.assertEqual(seqs, sorted(set(seqs)), "strictly increasing seqs")
        self.assertTrue(all(s > seq0 for s in seqs))
        self.assertTrue(all(e["channel"] == "workers" for e in evs))
        mine = [e for e in evs if e["data"].get("id") == wid]
        types = [e["type"] for e in mine]
        self.assertEqual(types[0], "worker.spawned")
        self.assertEqual(types[-1], "worker.exited")
        self.assertEqual(mine[-1]["data"]["status"], "exited")
        self.assertEqual(mine[0]["data"]["command"], "echo evented")
        self.assertEqual(self.c.last_event_id, seqs[-1])
        # the same events as the worker's trace in the mount
        trace = [json.loads(x) for x in mount_read("mma/workers/%d/trace" % wid).splitlines() if x]
        tseq = {e["seq"] for e in trace}
        for e in mine:
            self.assertIn(e["seq"], tseq)
        # resume from the first event: exactly the rest, no gap
        again = self.collect(self.c.events(since=seqs[0], channels="workers", timeout=TIMEOUT),
                             lambda e: e["seq"] >= seqs[-1])
        self.assertEqual([e["seq"] for e in again], seqs[1:])
        self.assertEqual(again, evs[1:])
        # since=None: only what comes after the call
        gen = self.c.events(channels=["workers"], timeout=TIMEOUT)
        w2 = self.c.spawn_worker("true")
        first = next(gen)
        gen.close()
        self.assertGreater(first["seq"], seqs[-1])
        self.assertEqual((first["type"], first["data"]["id"]), ("worker.spawned", w2["id"]))
        # other channels are filtered out; all channels when none is named
        allev = self.collect(self.c.events(since=seq0, timeout=TIMEOUT),
                             lambda e: e.get("seq") == seqs[-1])
        self.assertTrue({e["seq"] for e in allev} >= set(seqs))
        self.assertOrchfsError(400, "EINVAL", lambda: next(self.c.events(channels="nope")))

    def test_events_reconnect_with_last_event_id(self):
        proxy = DropProxy(API)
        self.addCleanup(proxy.close)
        with open(TOKEN_FILE) as f:
            pc = OrchfsClient(proxy.url, token=f.read().strip(), timeout=TIMEOUT)
        seq0 = self.c.get_state()["seq"]
        a = self.c.spawn_worker("true")
        gen = pc.events(since=seq0, channels=["workers"], timeout=TIMEOUT)
        got = self.collect(gen, lambda e: e["type"] == "worker.exited" and e["data"]["id"] == a["id"])
        s1 = pc.last_event_id
        self.assertEqual(s1, got[-1]["seq"])
        proxy.drop_all()
        b = self.c.spawn_worker("true")   # its events come while the stream is down
        wait_until(lambda: self.worker_status(b["id"]) == "exited", what="b exits")
        got += self.collect(gen, lambda e: e["type"] == "worker.exited" and e["data"]["id"] == b["id"])
        gen.close()
        # the whole run equals one unbroken read: no gap, no repeat
        ref = self.collect(self.c.events(since=seq0, channels=["workers"], timeout=TIMEOUT),
                           lambda e: e["seq"] >= got[-1]["seq"])
        ref_seqs = [e["seq"] for e in ref]
        self.assertEqual([e["seq"] for e in got], ref_seqs)
        self.assertEqual(len(proxy.heads), 2, proxy.heads)
        self.assertIn("since=%d" % seq0, proxy.heads[0].splitlines()[0])
        second = proxy.heads[1]
        self.assertNotIn("since=", second.splitlines()[0])
        # the last id yielded before the reconnection: s1, or a later one
        # that was already in flight when the connection was cut
        m = re.search(r"(?im)^last-event-id: (\d+)\r?$", second)
        self.assertIsNotNone(m, second)
        self.assertIn(int(m.group(1)), ref_seqs)
        self.assertGreaterEqual(int(m.group(1)), s1)
        self.assertLess(int(m.group(1)), got[-1]["seq"])

        # once: when the reconnection fails too, OrchfsError (status 0, EIO)
        gen = pc.events(since=seq0, channels=["workers"], timeout=TIMEOUT)
        next(gen)
        proxy.stop_accepting()
        proxy.drop_all()
        with self.assertRaises(OrchfsError) as cm:
            for _ in range(10000):
                next(gen)
        self.assertEqual((cm.exception.status, cm.exception.errno), (0, "EIO"))

    def test_events_reconnect_after_silence(self):
        proxy = DropProxy(API)
        self.addCleanup(proxy.close)
        with open(TOKEN_FILE) as f:
            pc = OrchfsClient(proxy.url, token=f.read().strip(), timeout=TIMEOUT)
        gen = pc.events(channels=["workers"], timeout=1.0)   # 1 s of silence is a drop
        a = self.c.spawn_worker("true")
        got = self.collect(gen, lambda e: e["type"] == "worker.exited" and e["data"]["id"] == a["id"])
        proxy.stall_all()
        b = self.c.spawn_worker("true")
        wait_until(lambda: self.worker_status(b["id"]) == "exited", what="b exits")
        t0 = time.monotonic()
        more = self.collect(gen, lambda e: e["type"] == "worker.exited" and e["data"]["id"] == b["id"])
        gen.close()
        self.assertLess(time.monotonic() - t0, 4.0)
        got += more
        ref = self.collect(self.c.events(since=got[0]["seq"] - 1, channels=["workers"],
                                         timeout=TIMEOUT), lambda e: e["seq"] >= got[-1]["seq"])
        ref_seqs = [e["seq"] for e in ref]
        self.assertEqual([e["seq"] for e in got], ref_seqs, "no gap, no repeat")
        self.assertIn(b["id"], [e["data"]["id"] for e in more if e["type"] == "worker.spawned"])
        heads = [h for h in proxy.heads if h.startswith("GET /api/events")]
        self.assertEqual(len(heads), 2, heads)   # (the first request read state.json)
        self.assertIn("since=", heads[0].splitlines()[0])
        m = re.search(r"(?im)^last-event-id: (\d+)\r?$", heads[1])
        self.assertIsNotNone(m, heads[1])
        self.assertIn(int(m.group(1)), ref_seqs)
        self.assertLess(int(m.group(1)), b_spawned_seq(more, b["id"]))

    def test_events_telemetry_frames(self):
        gen = self.c.events(channels=["telemetry"], timeout=TIMEOUT)
        frame = next(gen)
        gen.close()
        self.assertEqual(frame["channel"], "telemetry")
        self.assertNotIn("seq", frame)
        self.assertIn("uptime_s", frame["data"])

    def test_events_no_reconnect(self):
        proxy = DropProxy(API)
        self.addCleanup(proxy.close)
        with open(TOKEN_FILE) as f:
            pc = OrchfsClient(proxy.url, token=f.read().strip(), timeout=TIMEOUT)
        seq0 = self.c.get_state()["seq"]
        self.c.spawn_worker("true")
        gen = pc.events(since=seq0, channels=["workers"], timeout=TIMEOUT, reconnect=False)
        next(gen)
        n_heads = len(proxy.heads)
        proxy.drop_all()
        with self.assertRaises(OrchfsError) as cm:
            for _ in range(10000):
                next(gen)
        self.assertEqual(cm.exception.status, 0)
        self.assertEqual(len(proxy.heads), n_heads, "no reconnection")

    # --- the module's own example ---

    def test_module_docstring_example_runs(self):
        import orchfs_client
        m = re.search(r"::\n\n((?:    .*\n|\n)+)", orchfs_client.__doc__)
        self.assertIsNotNone(m, "the module docstring has an example block")
        code = "\n".join(line[4:] for line in m.group(1).splitlines())
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "orchfs_client example", "exec"), {})
        lines = out.getvalue().splitlines()
        self.assertEqual(lines[0], "running")
        self.assertRegex(lines[1], r"^worker \d+ exited$")
        self.assertEqual(lines[2], "404 ENOENT")

    def test_every_public_method_has_a_docstring(self):
        import orchfs_client
        for cls in (OrchfsClient, OrchfsError):
            self.assertTrue(cls.__doc__)
            for name, fn in vars(cls).items():
                if callable(fn) and not name.startswith("_"):
                    self.assertTrue(getattr(fn, "__doc__", None), name)
        self.assertIn("OrchfsClient(", orchfs_client.__doc__)


if __name__ == "__main__":
    unittest.main(verbosity=2)
