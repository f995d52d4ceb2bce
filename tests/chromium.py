"""A small Chrome DevTools Protocol client for tests: headless Chromium over ``--remote-debugging-pipe``.

Chromium reads protocol commands from fd 3 and writes replies and events to fd 4, one JSON message
per NUL-terminated chunk. No Python dependency beyond the standard library.

Lifecycle: ``with Chromium() as browser: page = browser.open(path)`` starts the browser, opens a tab
on the file, waits for its load event and returns a :class:`Page` whose ``problems()`` lists what
went wrong (images that did not load, console errors and warnings, failed or outside requests);
leaving the ``with`` closes the browser and removes its profile.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["Chromium", "Page", "CDPError", "ensure_chromium", "CHROMIUM"]

CHROMIUM = "/usr/bin/chromium"

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--remote-debugging-pipe")

# Schemes a self-contained page may load; anything else is an outside request.
LOCAL_SCHEMES = ("file:", "data:", "about:")

IMAGES_JS = """JSON.stringify(Array.from(document.images).map((im, i) => ({
  index: i, cls: im.className, alt: im.alt, src: im.src.slice(0, 60),
  complete: im.complete, naturalWidth: im.naturalWidth, naturalHeight: im.naturalHeight})))"""


_TRAMPOLINE = """import os, sys
r, w = int(sys.argv[1]), int(sys.argv[2])
os.dup2(r, 3)
os.dup2(w, 4)
os.close(r)
os.close(w)
os.execv(sys.argv[3], sys.argv[3:])
"""


class CDPError(RuntimeError):
    """The browser could not be started, answered with an error, or did not answer in time."""


def ensure_chromium(lock_path: str = "/tmp/explorer-chromium-install.lock", timeout_s: float = 900) -> str:
    """The Chromium binary, installed with apt-get when missing (as root, where apt-get exists).

    Parallel callers serialise on a file lock, so that one installs and the others find it done.
    Returns the path; raises :class:`CDPError` with the reason when it is missing and cannot be installed.
    """
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None:
        raise CDPError(f"{CHROMIUM} is missing and this machine has no apt-get to install it")
    if os.geteuid() != 0:
        raise CDPError(f"{CHROMIUM} is missing; installing it needs root (apt-get install chromium)")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if os.access(CHROMIUM, os.X_OK):  # another process installed it while we waited
                return CHROMIUM
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            install = [apt, "-o", "DPkg::Lock::Timeout=300", "install", "-y", "--no-install-recommends", "chromium"]
            log = []
            for cmd in (install, [apt, "-o", "DPkg::Lock::Timeout=300", "update"], install):
                try:
                    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
                except subprocess.TimeoutExpired:
                    raise CDPError(f"`{' '.join(cmd)}` took more than {timeout_s:.0f} s") from None
                log.append(r.stdout[-500:] + r.stderr[-500:])
                if cmd is install and r.returncode == 0 and os.access(CHROMIUM, os.X_OK):
                    return CHROMIUM
            raise CDPError(f"apt-get could not install chromium: {log[-1].strip()[-400:]}")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class Page:
    """A tab attached with a flat session: evaluate expressions; read what it logged."""

    def __init__(self, browser: "Chromium", session_id: str):
        self.browser, self.session_id = browser, session_id
        self.console: list[str] = []  # error/warning-level console messages, exceptions, log entries
        self.failed_requests: list[str] = []
        self.outside_requests: list[str] = []
        self.requests: list[str] = []

    def send(self, method: str, params: dict | None = None, timeout_s: float = 30) -> dict:
        return self.browser.send(method, params, session_id=self.session_id, timeout_s=timeout_s)

    def evaluate(self, expression: str, timeout_s: float = 30):
        """The value of a JavaScript expression in the page (JSON-serialisable values)."""
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, timeout_s)
        if "exceptionDetails" in r:
            raise CDPError(f"{expression[:60]!r} threw: {r['exceptionDetails'].get('text')}")
        return r["result"].get("value")

    def images(self) -> list[dict]:
        return json.loads(self.evaluate(IMAGES_JS))

    def broken_images(self) -> list[dict]:
        return [im for im in self.images() if not im["complete"] or im["naturalWidth"] <= 0]

    def screenshot(self, path: str | Path, full_page: bool = True) -> Path:
        params = {"format": "png", "captureBeyondViewport": full_page}
        Path(path).write_bytes(base64.b64decode(self.send("Page.captureScreenshot", params, 60)["data"]))
        return Path(path)

    def problems(self) -> list[str]:
        """Everything that says the page did not render on its own: empty means all is well."""
        out = [f"image {im['index']} ({im['cls']!r}, alt {im['alt']!r}) did not load: complete={im['complete']}, "
               f"naturalWidth={im['naturalWidth']}, src {im['src']}..." for im in self.broken_images()]
        out += [f"console: {m}" for m in self.console]
        out += [f"request failed: {m}" for m in self.failed_requests]
        out += [f"outside request: {m}" for m in self.outside_requests]
        return out

    def _event(self, method: str, p: dict) -> None:
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            self.console.append(f"{p['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.console.append(f"exception: {d.get('text')} {d.get('exception', {}).get('description', '')}")
        elif method == "Log.entryAdded":
            e = p.get("entry", {})
            if e.get("level") in ("error", "warning"):
                self.console.append(f"{e.get('level')} ({e.get('source')}): {e.get('text')} {e.get('url', '')}")
        elif method == "Network.requestWillBeSent":
            url = p.get("request", {}).get("url", "")
            self.requests.append(url[:100])
            if not url.startswith(LOCAL_SCHEMES):
                self.outside_requests.append(url[:200])
        elif method == "Network.loadingFailed":
            self.failed_requests.append(f"{p.get('type')} {p.get('errorText')} (request {p.get('requestId')})")


class Chromium:
    """Headless Chromium with a fresh profile, driven over the DevTools pipe (see the module doc)."""

    def __init__(self, binary: str = CHROMIUM, timeout_s: float = 60):
        self.binary, self.timeout_s = binary, timeout_s
        self.proc: subprocess.Popen | None = None
        self._id = 0
        self._replies: dict[int, queue.Queue] = {}
        self._events: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._pages: dict[str, Page] = {}
        self.stderr_tail = b""

    # -- process ---------------------------------------------------------------------------------
    def __enter__(self) -> "Chromium":
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        to_browser_r, self._to_browser = os.pipe()  # browser reads commands on fd 3
        self._from_browser, from_browser_w = os.pipe()  # and writes to fd 4
        # The child's ends move above 4 first, so that putting one on fd 3 cannot overwrite the other.
        ends = []
        for fd in (to_browser_r, from_browser_w):
            ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5))
            os.close(fd)
        to_browser_r, from_browser_w = ends
        # A Python trampoline puts them on fds 3 and 4 and execs the browser (no preexec_fn in a
        # threaded process; a shell's redirections take single-digit fds only).
        cmd = [sys.executable, "-c", _TRAMPOLINE, str(to_browser_r), str(from_browser_w), self.binary, *FLAGS,
               f"--user-data-dir={self.profile}", "about:blank"]
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, pass_fds=(to_browser_r, from_browser_w))
        finally:
            os.close(to_browser_r)
            os.close(from_browser_w)
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        try:
            self.version = self.send("Browser.getVersion", timeout_s=self.timeout_s)
        except CDPError:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.send("Browser.close", timeout_s=5)
            except CDPError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_tail = (self.stderr_tail + line)[-4000:]

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self._events.put(None)
                for q in list(self._replies.values()):
                    q.put({"error": {"message": "the browser closed the pipe"}})
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    q = self._replies.get(msg["id"])
                    if q is not None:
                        q.put(msg)
                else:
                    page = self._pages.get(msg.get("sessionId"))
                    if page is not None:
                        page._event(msg["method"], msg.get("params", {}))
                    self._events.put(msg)

    # -- protocol --------------------------------------------------------------------------------
    def send(self, method: str, params: dict | None = None, session_id: str | None = None,
             timeout_s: float = 30) -> dict:
        """Send a command and wait for its reply's ``result``."""
        with self._lock:
            self._id += 1
            mid = self._id
            q = self._replies[mid] = queue.Queue()
            msg = {"id": mid, "method": method, "params": params or {}}
            if session_id:
                msg["sessionId"] = session_id
            try:
                os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
            except OSError as e:
                raise CDPError(f"{method}: cannot write to the browser ({e}); stderr: {self._stderr()}") from None
        try:
            reply = q.get(timeout=timeout_s)
        except queue.Empty:
            raise CDPError(f"{method}: no reply in {timeout_s:.0f} s; stderr: {self._stderr()}") from None
        finally:
            self._replies.pop(mid, None)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error'].get('message')}; stderr: {self._stderr()}")
        return reply.get("result", {})

    def _stderr(self) -> str:
        return self.stderr_tail.decode(errors="replace")[-800:]

    def wait_event(self, method: str, session_id: str, timeout_s: float) -> dict:
        end = time.monotonic() + timeout_s
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise CDPError(f"no {method} in {timeout_s:.0f} s")
            try:
                msg = self._events.get(timeout=left)
            except queue.Empty:
                continue
            if msg is None:
                raise CDPError(f"the browser exited while waiting for {method}; stderr: {self._stderr()}")
            if msg.get("method") == method and msg.get("sessionId") == session_id:
                return msg.get("params", {})

    def open(self, path: str | Path, settle_s: float = 0.3, timeout_s: float = 60) -> Page:
        """A new tab on the file, after its load event (and ``settle_s`` for late messages)."""
        url = Path(path).resolve().as_uri()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = self._pages[sid] = Page(self, sid)
        for domain in ("Runtime", "Log", "Page", "Network"):
            page.send(f"{domain}.enable")
        nav = page.send("Page.navigate", {"url": url}, timeout_s)
        if nav.get("errorText"):
            raise CDPError(f"navigating to {url}: {nav['errorText']}")
        self.wait_event("Page.loadEventFired", sid, timeout_s)
        time.sleep(settle_s)
        return page
