"""Headless Chromium over the DevTools protocol, for tests that look at a page as a user does.

Starts Debian's `chromium` (the package scripts/setup installs) headless with its own
temporary profile, talks the Chrome DevTools Protocol (CDP) to it with the `websockets`
package (its sync client), and always kills it again, also when a test fails. No pytest at
import; standard library plus websockets.

    with Browser() as b:
        page = b.open("file:///tmp/out/report.html")      # waits for the load event
        assert page.errors == [], page.describe()          # console errors, exceptions, failed loads
        assert page.external_requests == []                # nothing fetched but file://
        page.screenshot("/tmp/out/report.png")             # full page PNG
        n = page.evaluate("document.querySelectorAll('svg').length")

What a Page collects from the moment it is created (before navigation):
    console      Runtime.consoleAPICalled: [{"type", "text", "url", "line"}]
    exceptions   Runtime.exceptionThrown: [{"text", "url", "line"}]
    log          Log.entryAdded (the browser's own messages, e.g. a resource that failed to
                 load, a blocked request, a CSP violation): [{"source", "level", "text", "url"}]
    requests     Network.requestWillBeSent: [{"url", "type", "method"}], every request the
                 page made, the document itself included
    errors       console messages of type error/assert, every exception, log entries of
                 level error: one line of text each
    external_requests  the requests whose URL is not file:// (data:, blob: and about: are
                 not network and do not count)

The browser:
    Browser(executable=None, timeout=30, width=1280, height=900)
    executable: $CHROMIUM, else /usr/lib/chromium/chromium (what Debian's /usr/bin/chromium
    wrapper execs), else `chromium` on PATH. Started with --headless=new --no-sandbox
    --disable-gpu --remote-debugging-port=0 --user-data-dir=<tmp>; the DevTools port and
    path are read from <tmp>/DevToolsActivePort. It runs in a process group of its own,
    which close() kills (SIGTERM, then SIGKILL) together with every helper process.
"""
import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from websockets.sync.client import connect

__all__ = ["Browser", "Page", "BrowserError", "find_chromium"]

NOT_NETWORK = ("file:", "data:", "blob:", "about:")


class BrowserError(RuntimeError):
    """Chromium could not be started or did not answer as CDP says."""


def find_chromium():
    """The Chromium executable to run, or None."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env
    for candidate in ("/usr/lib/chromium/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _remote_text(obj):
    """A Runtime.RemoteObject as the console would print it."""
    if "value" in obj:
        v = obj["value"]
        return v if isinstance(v, str) else json.dumps(v)
    if obj.get("unserializableValue"):
        return obj["unserializableValue"]
    preview = obj.get("preview")
    if preview and preview.get("properties") is not None:
        inner = ", ".join(f"{p['name']}: {p.get('value', p.get('type'))}" for p in preview["properties"])
        return f"{obj.get('description') or obj.get('className') or 'Object'} {{{inner}}}"
    return obj.get("description") or obj.get("type", "")


class Page:
    """One tab. Created by Browser.open(); see the module docstring for what it collects."""

    def __init__(self, browser, target_id, session_id):
        self.browser = browser
        self.target_id = target_id
        self.session_id = session_id
        self.url = None
        self.console = []
        self.exceptions = []
        self.log = []
        self.requests = []
        self.failed_requests = []
        self.loaded = False

    # ---- events (called by the browser's reader for this session)
    def _event(self, method, p):
        if method == "Runtime.consoleAPICalled":
            frame = ((p.get("stackTrace") or {}).get("callFrames") or [{}])[0]
            self.console.append({"type": p.get("type"),
                                 "text": " ".join(_remote_text(a) for a in p.get("args", [])),
                                 "url": frame.get("url"), "line": frame.get("lineNumber")})
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            exc = d.get("exception") or {}
            text = exc.get("description") or d.get("text") or "exception"
            self.exceptions.append({"text": text, "url": d.get("url"), "line": d.get("lineNumber")})
        elif method == "Log.entryAdded":
            e = p.get("entry", {})
            self.log.append({"source": e.get("source"), "level": e.get("level"),
                             "text": e.get("text"), "url": e.get("url")})
        elif method == "Network.requestWillBeSent":
            r = p.get("request", {})
            self.requests.append({"url": r.get("url"), "type": p.get("type"),
                                  "method": r.get("method")})
        elif method == "Network.loadingFailed":
            self.failed_requests.append({"type": p.get("type"), "error": p.get("errorText"),
                                         "blocked": p.get("blockedReason")})
        elif method == "Page.loadEventFired":
            self.loaded = True

    # ---- what a test asserts on
    @property
    def errors(self):
        out = [f"console.{m['type']}: {m['text']} ({m['url']}:{m['line']})"
               for m in self.console if m["type"] in ("error", "assert")]
        out += [f"exception: {e['text']} ({e['url']}:{e['line']})" for e in self.exceptions]
        out += [f"log {e['source']} error: {e['text']} ({e['url']})"
                for e in self.log if e["level"] == "error"]
        return out

    @property
    def external_requests(self):
        return [r["url"] for r in self.requests
                if not (r["url"] or "").lower().startswith(NOT_NETWORK)]

    def describe(self):
        """Everything collected, for assertion messages."""
        lines = [f"page {self.url} (loaded: {self.loaded})"]
        lines += [f"  console.{m['type']}: {m['text']}" for m in self.console]
        lines += [f"  exception: {e['text']}" for e in self.exceptions]
        lines += [f"  log {e['source']}/{e['level']}: {e['text']} {e['url'] or ''}" for e in self.log]
        lines += [f"  request {r['method']} {r['url'][:200]}" for r in self.requests]
        return "\n".join(lines)

    # ---- commands
    def send(self, method, params=None, timeout=None):
        return self.browser.send(method, params, session_id=self.session_id, timeout=timeout)

    def evaluate(self, expression, await_promise=False, timeout=None):
        """Runtime.evaluate with returnByValue: the expression's value as JSON gives it.
        A JavaScript exception raises BrowserError with its text."""
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                           "awaitPromise": await_promise}, timeout=timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise BrowserError(f"evaluate({expression[:80]!r}) threw: "
                               f"{(d.get('exception') or {}).get('description') or d.get('text')}")
        return r.get("result", {}).get("value")

    def settle(self, timeout=None):
        """Wait for two animation frames (what scripts draw on load is then laid out) and
        let pending events arrive."""
        self.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))",
                      await_promise=True, timeout=timeout)
        self.browser.pump(0.2)

    def screenshot(self, path, full_page=True):
        """A PNG of the page (the whole page with full_page, else the viewport) at path."""
        self.send("Page.bringToFront")      # a background tab draws no frames to capture
        params = {"format": "png"}
        if full_page:
            metrics = self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics.get("contentSize")
            params["captureBeyondViewport"] = True
            params["clip"] = {"x": 0, "y": 0, "width": max(1, size["width"]),
                              "height": max(1, size["height"]), "scale": 1}
        data = base64.b64decode(self.send("Page.captureScreenshot", params)["data"])
        Path(path).write_bytes(data)
        return Path(path)


class Browser:
    """Headless Chromium with one CDP connection to the browser; see the module docstring."""

    def __init__(self, executable=None, timeout=30.0, width=1280, height=900):
        self.executable = executable or find_chromium()
        self.timeout = timeout
        self.width, self.height = width, height
        self.proc = None
        self.ws = self._ws_context = None
        self.profile = None
        self.stderr_path = None
        self._next_id = 0
        self._pages = {}
        self._responses = {}

    # ---- life cycle
    def start(self):
        if not self.executable:
            raise BrowserError("no Chromium: install Debian's `chromium` (scripts/setup) or set CHROMIUM")
        self.profile = Path(tempfile.mkdtemp(prefix="mge-chromium-"))
        self.stderr_path = self.profile.parent / (self.profile.name + ".stderr")
        args = [self.executable, "--headless=new", "--no-sandbox", "--disable-gpu",
                "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
                f"--window-size={self.width},{self.height}", "--hide-scrollbars",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-dev-shm-usage", "--mute-audio",
                "--disable-features=Translate,MediaRouter,OptimizationHints",
                "about:blank"]
        try:
            with open(self.stderr_path, "wb") as err:
                self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                             stderr=err, start_new_session=True)
            port, path = self._devtools_address()
            # Entered as a context manager (websockets 17.1 deprecates the bare call);
            # close() leaves it.
            self._ws_context = connect(f"ws://127.0.0.1:{port}{path}", max_size=256 << 20,
                                       open_timeout=self.timeout, ping_interval=None)
            self.ws = self._ws_context.__enter__()
        except BaseException:
            self.close()
            raise
        return self

    def _devtools_address(self):
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited with status {self.proc.returncode} at start\n"
                                   f"{self.stderr_tail()}")
            try:
                lines = active.read_text().split("\n")
                if len(lines) >= 2 and lines[0].strip().isdigit() and lines[1].startswith("/devtools/"):
                    return int(lines[0]), lines[1].strip()
            except OSError:
                pass
            time.sleep(0.05)
        raise BrowserError(f"no {active} within {self.timeout} s\n{self.stderr_tail()}")

    def stderr_tail(self, n=3000):
        try:
            return Path(self.stderr_path).read_text(errors="replace")[-n:]
        except (OSError, TypeError):
            return ""

    def close(self):
        """Close the connection and kill Chromium's whole process group; remove the profile."""
        if self.ws is not None:
            try:
                self.ws.send(json.dumps({"id": -1, "method": "Browser.close"}))
            except Exception:
                pass
            try:
                self._ws_context.__exit__(None, None, None)
            except Exception:
                pass
            self.ws = self._ws_context = None
        if self.proc is not None:
            pgid = self.proc.pid
            if self.proc.poll() is None:
                try:
                    self.proc.wait(2)
                except subprocess.TimeoutExpired:
                    pass
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(pgid, sig)        # helpers (zygote, renderers) share the group
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(3)
                except subprocess.TimeoutExpired:
                    pass
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            # Helpers orphaned by the kill are reaped by init a moment later: wait for the
            # group to be empty, so that no test leaves a Chromium process behind.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        if self.profile is not None:
            shutil.rmtree(self.profile, ignore_errors=True)
        if self.stderr_path is not None:
            try:
                os.unlink(self.stderr_path)
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # ---- the protocol
    def send(self, method, params=None, session_id=None, timeout=None):
        """Send one command and wait for its answer (events that arrive meanwhile go to their
        pages). Raises BrowserError on a CDP error or no answer in time."""
        self._next_id += 1
        msg_id = self._next_id
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session_id:
            msg["sessionId"] = session_id
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + (timeout or self.timeout)
        while msg_id not in self._responses:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read_one(left):
                if msg_id in self._responses:
                    break
                raise BrowserError(f"no answer to {method} within {timeout or self.timeout} s\n"
                                   f"{self.stderr_tail()}")
        r = self._responses.pop(msg_id)
        if "error" in r:
            raise BrowserError(f"{method}: {r['error']}")
        return r.get("result", {})

    def _read_one(self, timeout):
        try:
            raw = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return False
        m = json.loads(raw)
        if "id" in m:
            self._responses[m["id"]] = m
        else:
            page = self._pages.get(m.get("sessionId"))
            if page is not None:
                page._event(m.get("method"), m.get("params", {}))
        return True

    def pump(self, seconds):
        """Read events for `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._read_one(left)

    def wait_for(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"{what} not within {timeout} s")
            self._read_one(left)

    # ---- pages
    def new_page(self):
        """A blank tab with Runtime, Log, Network and Page events on (nothing loaded yet)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, target, session)
        self._pages[session] = page
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.send(f"{domain}.enable")
        page.send("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                         "deviceScaleFactor": 1, "mobile": False})
        return page

    def open(self, url, timeout=None, settle=True):
        """A new tab navigated to url; returns once Page.loadEventFired has arrived (and,
        with settle, two animation frames later). A failed navigation raises BrowserError."""
        page = self.new_page()
        page.url = url
        page.requests.clear()       # about:blank is not the page's
        r = page.send("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise BrowserError(f"navigating to {url}: {r['errorText']}")
        self.wait_for(lambda: page.loaded, timeout or self.timeout, f"the load event of {url}")
        if settle:
            page.settle(timeout)
        return page
