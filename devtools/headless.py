"""Headless Chromium driven over the DevTools protocol, for the web page's tests and its
screenshot (scripts/screenshot_web.py): Debian's `chromium` (scripts/setup.sh --dev installs it).

The browser listens for DevTools on 127.0.0.1 only, on a port it picks itself (written to
DevToolsActivePort in its private profile folder); a page is driven over one WebSocket (the
`websockets` package, synchronous client). Every wait is bounded.

    with Browser(tmp_path / "chromium") as browser:
        page = browser.open("http://127.0.0.1:8765/#token=...")
        page.wait("document.querySelectorAll('.utt').length >= 3", 30)
        page.click("#mute")
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psutil

from babelfish import BabelfishError


class BrowserError(BabelfishError):
    """Chromium is missing, did not start, or a page did not do what was asked in time."""


def find_chromium() -> str | None:
    """The Chromium executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Page:
    """One tab, over its DevTools WebSocket."""

    def __init__(self, ws_url: str, timeout: float):
        from websockets.sync.client import connect

        # (entered as its context manager, as websockets wants; closed by close())
        self.ws = connect(ws_url, open_timeout=timeout, max_size=None, proxy=None).__enter__()
        self.timeout = timeout
        self.next_id = 0

    def call(self, method: str, params: dict | None = None, timeout: float | None = None) -> dict:
        """One DevTools command; its result (events that come meanwhile are skipped)."""
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params or {}}))
        end = time.monotonic() + (timeout or self.timeout)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise BrowserError(f"{method}: no answer from Chromium in time")
            try:
                msg = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                raise BrowserError(f"{method}: no answer from Chromium in time") from None
            if msg.get("id") == mid:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error'].get('message')}")
                return msg.get("result", {})

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        r = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in r:
            raise BrowserError(f"{expression}: {r['exceptionDetails'].get('text')}")
        return r.get("result", {}).get("value")

    def wait(self, expression: str, timeout: float, interval: float = 0.1):
        """Poll `expression` until it is truthy; its value. BrowserError after `timeout` s (an
        expression that throws, e.g. while the page is still loading, counts as false)."""
        end = time.monotonic() + timeout
        value = None
        while time.monotonic() < end:
            try:
                value = self.evaluate(expression)
            except BrowserError as e:
                if "no answer" in str(e):
                    raise
                value = str(e)
            else:
                if value:
                    return value
            time.sleep(interval)
        raise BrowserError(f"not true within {timeout:.0f} s: {expression} (last: {value!r})")

    def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) in the middle of the element."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()"
        )
        if not box:
            raise BrowserError(f"no element {selector} to click")
        for kind in ("mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1},
            )

    def screenshot(self, path: str | Path) -> None:
        """A PNG of what the page shows."""
        r = self.call("Page.captureScreenshot", {"format": "png"})
        Path(path).write_bytes(base64.b64decode(r["data"]))

    def close(self) -> None:
        self.ws.close()


class Browser:
    """A headless Chromium with a private profile folder (`profile`); a context manager."""

    def __init__(
        self, profile: str | Path, *, width: int = 412, height: int = 860, timeout: float = 30
    ):
        exe = find_chromium()
        if exe is None:
            raise BrowserError("Chromium is not installed (scripts/setup.sh --dev installs it)")
        self.profile = Path(profile)
        self.profile.mkdir(parents=True, exist_ok=True)
        (self.profile / "DevToolsActivePort").unlink(missing_ok=True)  # a last run's
        self.timeout = timeout
        cmd = [
            exe,
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        if os.geteuid() == 0:
            cmd.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root
        self.log = open(self.profile / "chromium.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.pages: list[Page] = []
        try:
            self.port = self._devtools_port()
        except BaseException:
            self.close()
            raise

    def _devtools_port(self) -> int:
        f = self.profile / "DevToolsActivePort"
        end = time.monotonic() + self.timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise BrowserError(f"Chromium exited with code {self.proc.returncode}")
            try:
                port = f.read_text().split()[0]
                if port.isdigit():
                    return int(port)
            except (OSError, IndexError):
                pass
            time.sleep(0.05)
        raise BrowserError(f"Chromium did not open its DevTools port within {self.timeout:.0f} s")

    def open(self, url: str) -> Page:
        """A new tab at `url`."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/json/new?{urllib.parse.quote(url, safe='')}",
            method="PUT",
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=self.timeout) as r:
            target = json.loads(r.read())
        page = Page(target["webSocketDebuggerUrl"], self.timeout)
        self.pages.append(page)
        return page

    def close(self) -> None:
        for page in self.pages:
            try:
                page.close()
            except Exception:  # the browser may be gone already
                pass
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            kids = []
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _, alive = psutil.wait_procs(kids, timeout=5)  # its renderers and helpers go with it
        for p in alive:
            p.kill()
        self.log.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
