# cdp: a small client of Chromium's DevTools protocol for the dashboard's
# browser test (test_dashboard.sh), on Python's websockets (Debian's
# python3-websockets). Starts headless Chromium with its own profile
# directory, drives one page, and collects every console error, uncaught
# exception and error log entry of it. Every wait is bounded.
#   async with Browser(profile_dir) as b:
#       await b.goto("http://127.0.0.1:8999/#token=...")
#       await b.wait("document.body.dataset.ready === '1'", 10)
#       await b.click("#btn-pause")
#       assert not b.errors
import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import websockets


def chromium_binary():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(Exception):
    pass


class Browser:
    def __init__(self, profile, width=1280, height=800):
        self.profile = profile
        self.width, self.height = width, height
        self.proc = None
        self.ws = None
        self.next_id = 0
        self.pending = {}
        self.handlers = {}
        self.errors = []          # (kind, text) of what the page reported as errors
        self.reader = None

    async def __aenter__(self):
        binary = chromium_binary()
        if not binary:
            raise CDPError("no chromium")
        os.makedirs(self.profile, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
             "--user-data-dir=" + self.profile, f"--window-size={self.width},{self.height}",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.profile, "chromium.log"), "w"), start_new_session=True,
            # its singleton socket's directory goes with the profile, not in /tmp
            env={**os.environ, "TMPDIR": self.profile})
        # Chromium writes the port it took into the profile
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        end = time.time() + 30
        port = None
        while time.time() < end:
            if self.proc.poll() is not None:
                raise CDPError(f"chromium exited ({self.proc.returncode})")
            try:
                with open(port_file) as f:
                    port = int(f.readline())
                break
            except (OSError, ValueError):
                await asyncio.sleep(0.1)
        if not port:
            raise CDPError("chromium gave no DevTools port within 30 s")
        targets = []
        while time.time() < end and not targets:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                    targets = [t for t in json.load(r) if t.get("type") == "page"]
            except OSError:
                await asyncio.sleep(0.1)
        if not targets:
            raise CDPError("chromium has no page")
        self.ws = await websockets.connect(targets[0]["webSocketDebuggerUrl"], max_size=None,
                                           open_timeout=10, close_timeout=2)
        self.reader = asyncio.ensure_future(self._read())
        self.on("Runtime.consoleAPICalled", self._console)
        self.on("Runtime.exceptionThrown", self._exception)
        self.on("Log.entryAdded", self._log)
        for domain in ("Runtime", "Log", "Page"):
            await self.send(domain + ".enable")
        await self.send("Emulation.setDeviceMetricsOverride",
                        {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        return self

    async def __aexit__(self, *exc):
        if self.reader:
            self.reader.cancel()
        if self.ws:
            try:
                await asyncio.wait_for(self.ws.close(), 2)
            except Exception:
                pass
        self.kill()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait(timeout=10)

    def network_pid(self):
        """The pid of this browser's network process (it reads the page's
        sockets), or None."""
        mark = "--user-data-dir=" + self.profile
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    # a zygote's child sets its title: its arguments joined by spaces
                    line = f.read().decode(errors="replace").replace("\0", " ") + " "
            except OSError:
                continue
            if mark + " " in line and "network.mojom.NetworkService" in line:
                return int(pid)
        return None

    # --- the protocol ---

    def on(self, method, fn):
        self.handlers.setdefault(method, []).append(fn)

    async def _read(self):
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg and msg["id"] in self.pending:
                self.pending.pop(msg["id"]).set_result(msg)
            elif "method" in msg:
                for fn in self.handlers.get(msg["method"], []):
                    fn(msg.get("params", {}))

    async def send(self, method, params=None, timeout=20):
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params or {}}))
        msg = await asyncio.wait_for(fut, timeout)
        if "error" in msg:
            raise CDPError(f"{method}: {msg['error']}")
        return msg.get("result", {})

    def _console(self, p):
        if p.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            self.errors.append(("console", text))

    def _exception(self, p):
        d = p.get("exceptionDetails", {})
        ex = d.get("exception", {})
        self.errors.append(("exception", ex.get("description") or d.get("text", "?")))

    def _log(self, p):
        e = p.get("entry", {})
        if e.get("level") == "error":
            self.errors.append(("log:" + e.get("source", "?"), e.get("text", "") + " " + e.get("url", "")))

    # --- the page ---

    async def goto(self, url, timeout=20):
        loaded = asyncio.get_running_loop().create_future()

        def done(_):
            if not loaded.done():
                loaded.set_result(True)
        self.on("Page.loadEventFired", done)
        await self.send("Page.navigate", {"url": url})
        try:
            await asyncio.wait_for(loaded, timeout)
        finally:
            self.handlers["Page.loadEventFired"].remove(done)

    async def blank(self, timeout=10):
        """Leaves the page (its connections close) for an empty one."""
        await self.send("Page.navigate", {"url": "about:blank"})
        end = time.monotonic() + timeout
        while time.monotonic() < end and await self.eval("location.href") != "about:blank":
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)

    async def eval(self, expr, timeout=20):
        r = await self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                                 "awaitPromise": True}, timeout)
        if "exceptionDetails" in r:
            raise CDPError(f"{expr}: {r['exceptionDetails'].get('exception', {}).get('description', r['exceptionDetails'])}")
        return r.get("result", {}).get("value")

    async def wait(self, expr, timeout, interval=0.05):
        """Polls expr in the page until it is truthy; its value, or None after timeout."""
        end = time.monotonic() + timeout
        while True:
            v = await self.eval(expr)
            if v:
                return v
            if time.monotonic() >= end:
                return None
            await asyncio.sleep(interval)

    async def click(self, selector):
        """A real mouse click at the middle of the element, scrolled into view."""
        box = await self.eval(f"""(() => {{
            const e = document.querySelector({json.dumps(selector)});
            if (!e) return null;
            e.scrollIntoView({{block: "center", inline: "center"}});
            const r = e.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2];
        }})()""")
        if not box:
            raise CDPError(f"nothing to click at {selector}")
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1],
                                                         "button": "left", "clickCount": 1})

    async def type_into(self, selector, text):
        await self.eval(f"""(() => {{
            const e = document.querySelector({json.dumps(selector)});
            e.focus(); e.value = {json.dumps(text)};
        }})()""")

    async def screenshot(self, path, full_page=False):
        params = {"format": "png"}
        if full_page:
            size = await self.eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params["clip"] = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
            params["captureBeyondViewport"] = True
        else:
            await self.eval("window.scrollTo(0, 0)")
        r = await self.send("Page.captureScreenshot", params, timeout=30)
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))
