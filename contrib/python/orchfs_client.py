"""orchfs_client: a small Python client for the orchfs HTTP API.

Standard library only (urllib, json, http.client); Python 3.9 or newer.
The successor of the original plan's ``api_hook_client.py``.

Every file under the orchfs mount at path ``P`` is also ``/api/P`` over HTTP:
``read(P)`` is ``GET /api/P`` and ``write(P, body)`` is ``POST /api/P``. The
other methods are named shortcuts for the paths of the README's "The namespace"
and "Remote: HTTP, SSE and WebSocket".
A failed call raises :class:`OrchfsError`, built from the server's error
object ``{"error":{"status","errno","message","path","ts"}}``.

Example (a daemon started with ``orchfs --http 127.0.0.1:8999 MOUNT`` makes
its token ``STATE_DIR/token``; it gives every worker ``ORCHFS_API`` and
``ORCHFS_TOKEN_FILE``, so inside a worker ``OrchfsClient()`` needs no
arguments; elsewhere export the two)::

    from orchfs_client import OrchfsClient, OrchfsError

    c = OrchfsClient(timeout=5)              # ORCHFS_API, ORCHFS_TOKEN_FILE
    print(c.read("mma/pipeline/status").strip())          # running
    seq = c.get_state()["seq"]               # follow events from here on
    w = c.spawn_worker("echo hello", env={"GREETING": "hi"})
    for ev in c.events(since=seq, channels=["workers"], timeout=10):
        if ev["type"] == "worker.exited" and ev["data"]["id"] == w["id"]:
            print("worker", w["id"], ev["data"]["status"])  # worker N exited
            break
    try:
        c.mutate_dag("add_dep no_such_task other")
    except OrchfsError as e:
        print(e.status, e.errno)                          # 404 ENOENT

Run ``python3 orchfs_client.py [PATH]`` to print one node (default
``mma/pipeline/status``) with ORCHFS_API and ORCHFS_TOKEN_FILE from the
environment.
"""

import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request

__all__ = ["OrchfsError", "OrchfsClient"]


class OrchfsError(Exception):
    """A failed orchfs call.

    Attributes:
        status:  the HTTP status (409, 404, 401 ...); 0 when no HTTP answer
                 came at all (connection refused, timeout, dropped stream).
        errno:   the error name from the server ("ELOOP", "ENOENT", ...);
                 "EIO" when the failure was not an orchfs error object.
        message: the human-readable message.
        path:    the namespace path the call was about ("mma/dag/mutate").
    """

    def __init__(self, status, errno, message, path=""):
        self.status = int(status or 0)
        self.errno = errno or "EIO"
        self.message = message or ""
        self.path = path or ""
        super().__init__(self.status, self.errno, self.message, self.path)

    def __str__(self):
        where = " %s:" % self.path if self.path else ""
        return "%s %s%s %s" % (self.status, self.errno, where, self.message)

    @classmethod
    def from_body(cls, status, body, path=""):
        """Builds the error from a response body: the server's error object
        when the body is one, else an EIO error quoting the body."""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        try:
            obj = json.loads(text)
            err = obj["error"]
            return cls(err.get("status", status), err.get("errno", "EIO"),
                       err.get("message", ""), err.get("path", path))
        except (ValueError, TypeError, KeyError, AttributeError):
            return cls(status, "EIO", text.strip()[:500] or "HTTP %s" % status, path)


def _clean_path(path):
    path = str(path).strip()
    if path.startswith("/api/"):
        path = path[5:]
    return path.lstrip("/")


def _body_bytes(body):
    """(bytes, content type) for a write body: str/bytes as is, JSON else."""
    if body is None:
        return b"", "text/plain; charset=utf-8"
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body), "application/octet-stream"
    if isinstance(body, str):
        return body.encode("utf-8"), "text/plain; charset=utf-8"
    return json.dumps(body).encode("utf-8"), "application/json"


def _decode(data, content_type):
    """Parsed JSON for an application/json response, else text."""
    text = data.decode("utf-8", "replace")
    if (content_type or "").split(";")[0].strip().lower() == "application/json":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


class OrchfsClient:
    """A client for one orchfs daemon's HTTP API.

    Args:
        base_url:   the listener, e.g. "http://127.0.0.1:8999" (a trailing
                    "/" or "/api" is accepted). Default: the environment's
                    ORCHFS_API (set for every worker the daemon runs).
        token:      the bearer token. Default: read from token_file.
        token_file: a file holding the token. Default: the environment's
                    ORCHFS_TOKEN_FILE. With none of the three, requests carry
                    no token (for a daemon run with --no-auth).
        timeout:    seconds for every network operation (connect and each
                    read); also the default wait between stream events.

    Attributes:
        last_event_id: the seq of the last event any events() generator of
                       this client yielded (None before the first); pass it
                       as ``since`` to resume after the generator ended.
    """

    def __init__(self, base_url=None, token=None, token_file=None, timeout=10.0):
        """Sets the listener, the token and the timeout (see the class doc)."""
        if base_url is None:
            base_url = os.environ.get("ORCHFS_API")
        if not base_url:
            raise ValueError("no base_url given and ORCHFS_API is not set")
        base_url = base_url.rstrip("/")
        if base_url.endswith("/api"):
            base_url = base_url[:-4]
        self.base_url = base_url
        if token is None:
            token_file = token_file or os.environ.get("ORCHFS_TOKEN_FILE")
            if token_file:
                with open(token_file, "r", encoding="utf-8") as f:
                    token = f.read().strip()
        self.token = token or None
        self.timeout = float(timeout)
        self.last_event_id = None

    # --- transport ---

    def _url(self, path, query=None):
        url = self.base_url + "/api/" + urllib.parse.quote(_clean_path(path), safe="/:@")
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return url

    def _headers(self, extra=None):
        h = {"Accept": "application/json, text/plain;q=0.9, */*;q=0.5"}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        if extra:
            h.update(extra)
        return h

    def _open(self, method, path, data=None, headers=None, query=None, timeout=None):
        """Opens a request; returns the response or raises OrchfsError."""
        req = urllib.request.Request(self._url(path, query), data=data, method=method,
                                     headers=self._headers(headers))
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            try:
                body = e.read()
            except (OSError, http.client.HTTPException):
                body = b""
            finally:
                e.close()
            raise OrchfsError.from_body(e.code, body or str(e.reason), _clean_path(path)) from None
        except urllib.error.URLError as e:
            raise OrchfsError(0, "EIO", "%s: %s" % (self.base_url, e.reason),
                              _clean_path(path)) from None
        except (OSError, http.client.HTTPException) as e:
            raise OrchfsError(0, "EIO", "%s: %s" % (self.base_url, e or type(e).__name__),
                              _clean_path(path)) from None

    def _request(self, method, path, data=None, headers=None):
        resp = self._open(method, path, data, headers)
        try:
            body = resp.read()
            ctype = resp.headers.get("Content-Type", "")
        except (OSError, http.client.HTTPException) as e:
            raise OrchfsError(0, "EIO", "reading the answer: %s" % (e or type(e).__name__),
                              _clean_path(path)) from None
        finally:
            resp.close()
        return _decode(body, ctype)

    # --- the namespace ---

    def read(self, path):
        """GET /api/PATH: the node PATH (or PATH.json; a directory lists).

        Returns the parsed JSON when the server answers application/json,
        else the text (one-word files keep their newline: "running\\n").
        """
        return self._request("GET", path)

    def write(self, path, body=""):
        """POST /api/PATH: one write of BODY to the control file PATH.

        BODY: str or bytes are sent as they are; a dict or list is sent as
        JSON. Returns the result (parsed JSON, e.g. the new worker's record
        for mma/workers/spawn). Raises OrchfsError (and the daemon leaves its
        state as it was) when the write is refused.
        """
        data, ctype = _body_bytes(body)
        return self._request("POST", path, data, {"Content-Type": ctype})

    # --- reads ---

    def get_state(self):
        """state.json: pipeline, tracks, tasks, workers, context, metrics,
        telemetry and the current event ``seq``."""
        return self.read("state")

    def get_workers(self):
        """mma/workers.json: {"running", "total", "workers": [record ...]}."""
        return self.read("mma/workers")

    def get_worker(self, worker_id):
        """mma/workers/ID/info.json: one worker's whole record."""
        return self.read("mma/workers/%d" % int(worker_id))

    def get_context_state(self):
        """context/state.json: entries, skeleton cache and aggregation totals."""
        return self.read("context/state")

    def get_financial_metrics(self):
        """metrics/financial.json: tokens and cost in total, per track,
        per worker and per model, with the prices."""
        return self.read("metrics/financial")

    def get_telemetry(self):
        """system/telemetry.json: loop tick times, CPU, RSS, threads, queues,
        FUSE/HTTP/WebSocket counters, workers and store writes."""
        return self.read("system/telemetry")

    # --- control ---

    def spawn_worker(self, command, **fields):
        """Starts a worker by hand (mma/workers/spawn); returns its record
        (with "id").

        Keyword fields, all optional: task, track, cwd, env (a dict), model.
        Fields given as None are left out; an unknown field is refused by the
        daemon (OrchfsError EINVAL).
        """
        body = {"command": command}
        body.update({k: v for k, v in fields.items() if v is not None})
        return self.write("mma/workers/spawn", body)

    def kill_worker(self, worker_id, signal=None, grace_s=None):
        """Signals a worker's process group (mma/workers/kill); it ends as
        ``killed``.

        signal: a name ("TERM", "SIGKILL") or number; default TERM.
        grace_s: seconds before SIGKILL follows; default the daemon's
        --kill-grace. Returns the worker's record as of the kill (its status
        may still read "running" until the process is reaped). Killing a
        worker that has ended raises OrchfsError EBUSY (409).
        """
        body = {"id": int(worker_id)}
        if signal is not None:
            body["signal"] = signal
        if grace_s is not None:
            body["grace_s"] = grace_s
        return self.write("mma/workers/kill", body)

    def pause_pipeline(self, freeze=False):
        """Pauses the scheduler (mma/pipeline/pause): no new workers start.
        With freeze=True running workers are also stopped (SIGSTOP) until
        resume. Returns the pipeline's state ({"status": "paused"|"frozen"...})."""
        return self.write("mma/pipeline/pause", "freeze" if freeze else "pause")

    def resume_pipeline(self):
        """Resumes the scheduler (mma/pipeline/resume), continuing frozen
        workers. Returns the pipeline's state ({"status": "running", ...})."""
        return self.write("mma/pipeline/resume", "resume")

    def inject_context(self, path=None, text=None, name=None, kind=None):
        """Adds a context entry (context/inject); returns the entry.

        Give path (a file, or with kind="skeleton" an outline of a source
        file) or text; name defaults to the daemon's choice (the file's
        name); kind is "file", "skeleton" or "text".
        """
        body = {k: v for k, v in (("path", path), ("text", text), ("name", name),
                                  ("kind", kind)) if v is not None}
        return self.write("context/inject", body)

    def mutate_dag(self, ops):
        """Changes the DAG atomically (mma/dag/mutate): all operations or none.

        ops: a list of op dicts ([{"op": "add_dep", "task": "t", "dep": "d"}]),
        one op dict, or a string of line-form ops ("add_dep t d\\nskip x").
        A change that would make a cycle raises OrchfsError ELOOP (409).
        """
        return self.write("mma/dag/mutate", ops)

    def create_track(self, plan):
        """Creates a track from a plan (mma/tracks/create):
        {"id", "title"?, "budget_usd"?, "tasks": [task ...]}. Returns the track."""
        return self.write("mma/tracks/create", plan)

    def report_usage(self, worker_id, **usage):
        """Reports a worker's token usage (mma/workers/ID/usage); reports add up.

        Keywords: model, input_tokens, output_tokens, cache_read_tokens,
        cache_write_tokens. Returns the worker's usage totals.
        """
        body = {k: v for k, v in usage.items() if v is not None}
        return self.write("mma/workers/%d/usage" % int(worker_id), body)

    # --- the event stream ---

    def events(self, since=None, channels=None, timeout=None, reconnect=True):
        """Follows GET /api/events (Server-Sent Events): returns a generator
        of event dicts.

        Each event is {"seq", "ts", "channel", "type", "data"}, in seq order.
        since:    replay the kept events with seq > since first, then follow.
                  None: only events after this call (the current seq is read
                  from state.json by the call itself, before the generator
                  is first advanced, so even a drop before the first event
                  loses nothing). The connection opens at the first next().
        channels: a list (or "a,b" string) of channels; None for all. Frames
                  of the "telemetry" channel, if named, are yielded too: they
                  have no "seq" and do not move the resume point.
        timeout:  the longest wait for the next byte (the server sends a
                  keep-alive comment every 10 s); default max(client
                  timeout, 15 s).

        Resuming: the generator keeps the id of the last event it yielded
        (also in ``self.last_event_id``). If the connection drops (closed,
        reset, or silent past ``timeout``), it reconnects once, at once, with
        the header ``Last-Event-ID`` set to that id, so no event is lost or
        repeated. If that reconnection fails, or drops again before
        delivering an event, OrchfsError (status 0, errno "EIO") is raised;
        each delivered event re-arms the one reconnect. reconnect=False
        raises on the first drop. If the events after the resume point are
        no longer kept, OrchfsError errno "ERANGE" is raised. The generator
        never ends by itself: break out of the loop (or close() it), which
        closes the connection.
        """
        if isinstance(channels, (list, tuple, set)):
            channels = ",".join(channels)
        read_timeout = timeout if timeout is not None else max(self.timeout, 15.0)
        if since is None:
            # now, not at the first next(): "after this call" means this call
            since = self.get_state().get("seq")
        return self._follow(None if since is None else int(since), channels or None,
                            read_timeout, bool(reconnect))

    def _follow(self, last, channels, read_timeout, reconnect):
        """The generator behind events()."""
        retry_armed = bool(reconnect)
        first = True
        while True:
            query = {}
            if channels:
                query["channels"] = channels
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if first:
                if last is not None:
                    query["since"] = str(last)
            elif last is not None:
                headers["Last-Event-ID"] = str(last)
            first = False
            try:
                resp = self._open("GET", "events", headers=headers, query=query,
                                  timeout=read_timeout)
            except OrchfsError as e:
                if e.status or not retry_armed:
                    raise
                retry_armed = False
                continue
            frames = self._sse_frames(resp)
            try:
                while True:
                    try:
                        ev = next(frames)
                    except StopIteration:
                        dropped = "the server closed the stream"
                        break
                    except (OSError, http.client.HTTPException) as e:
                        dropped = "the stream broke: %s" % (e or type(e).__name__)
                        break
                    if isinstance(ev, dict) and ev.get("seq") is not None:
                        last = int(ev["seq"])
                        self.last_event_id = last
                        retry_armed = bool(reconnect)
                    yield ev
            finally:
                frames.close()
                resp.close()
            if not retry_armed:
                raise OrchfsError(0, "EIO", "%s (after seq %s)" % (dropped, last), "events")
            retry_armed = False

    @staticmethod
    def _sse_frames(resp):
        """Parses an SSE byte stream into event dicts (see events())."""
        data, event = [], None
        while True:
            raw = resp.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line == "":
                if data:
                    payload = "\n".join(data)
                    if event == "error":
                        raise OrchfsError.from_body(410, payload, "events")
                    try:
                        ev = json.loads(payload)
                    except ValueError:
                        ev = {"type": event or "message", "data": payload}
                    if event == "telemetry" and isinstance(ev, dict):
                        ev.setdefault("channel", "telemetry")
                    yield ev
                data, event = [], None
                continue
            if line.startswith(":"):
                continue   # a comment: the keep-alive
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "data":
                data.append(value)
            elif field == "event":
                event = value
            # "id" repeats the seq that the data carries; "retry" is unused


if __name__ == "__main__":
    import sys

    try:
        client = OrchfsClient()
        out = client.read(sys.argv[1] if len(sys.argv) > 1 else "mma/pipeline/status")
    except (OrchfsError, ValueError, OSError) as err:
        print("orchfs: %s" % err, file=sys.stderr)
        sys.exit(1)
    if isinstance(out, str):
        sys.stdout.write(out)
    else:
        print(json.dumps(out, indent=2))
