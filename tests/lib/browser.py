"""A real browser for the console tests: Debian's headless Chromium, driven
through the DevTools protocol (CDP) on --remote-debugging-pipe (JSON
messages ended by a NUL byte, Chromium reading fd 3 and writing fd 4): no
port to pick, nothing from PyPI. Stdlib only.

    with Browser(folder) as b:
        page = b.open("https://127.0.0.1:8443/serial.html#ticket=…")
        page.wait_for("document.body.dataset.state === 'connected'")
        page.insert_text("echo hi")
        page.press("Enter")
        png = page.screenshot()
"""

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         # The edge's certificate is self-signed.
         "--ignore-certificate-errors",
         "--window-size=1280,900", "--remote-debugging-pipe"]

# What Input.dispatchKeyEvent needs for the keys the tests press.
KEYS = {
    "Enter": {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"},
    "Backspace": {"key": "Backspace", "code": "Backspace", "windowsVirtualKeyCode": 8},
}


class CdpError(RuntimeError):
    pass


class Browser:
    """One Chromium with a fresh profile in its own folder, removed on close."""

    def __init__(self, folder: Path = None):
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=folder))
        self.log_path = self.profile.parent / f"{self.profile.name}.log"
        to_browser_r, self._out = os.pipe()
        self._in, from_browser_w = os.pipe()

        def on_fds_3_and_4():
            # Through fds above 4 first: a pipe end may already be 3 or 4
            # (and Python's are close-on-exec; dup2's copies are not).
            r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                     preexec_fn=on_fds_3_and_4, close_fds=False, start_new_session=True)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events = []  # (session, method, params) of every event received
        self.call("Browser.getVersion", timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, method, params=None, session=None, timeout=30):
        """Sends one command and waits for its reply; returns its result."""
        self._next_id += 1
        mid = self._next_id
        message = {"id": mid, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            for m in self._drain():
                if m.get("id") == mid:
                    if "error" in m:
                        raise CdpError(f"{method}: {m['error']}")
                    return m.get("result", {})
                if "method" in m:
                    self.events.append((m.get("sessionId"), m["method"], m.get("params", {})))
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError(f"{method}: no reply within {timeout} s\n{self.log_text()[-2000:]}")
            if not select.select([self._in], [], [], left)[0]:
                continue
            data = os.read(self._in, 1 << 20)
            if not data:
                raise CdpError(f"{method}: Chromium closed its pipe (exit {self.proc.poll()})\n"
                               f"{self.log_text()[-2000:]}")
            self._buffer += data

    def _drain(self):
        while b"\0" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\0", 1)
            yield json.loads(raw)

    def open(self, url):
        """A new tab on url, attached (flat sessions)."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.call("Runtime.enable")
        page.call("Page.enable")
        # A headless tab has no window focus unless told to act as if:
        # without it, keys go nowhere.
        page.call("Emulation.setFocusEmulationEnabled", {"enabled": True})
        page.call("Page.navigate", {"url": url})
        return page

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self):
        if self.proc.poll() is None:
            try:
                self.call("Browser.close", timeout=5)
            except (CdpError, OSError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        for fd in (self._in, self._out):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    def __init__(self, browser, session):
        self.browser = browser
        self.session = session

    def call(self, method, params=None, timeout=30):
        return self.browser.call(method, params, session=self.session, timeout=timeout)

    def evaluate(self, expression):
        """The expression's value (JSON-able), or CdpError with the exception."""
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise CdpError(f"{expression}: {r['exceptionDetails'].get('exception', r['exceptionDetails'])}")
        return r["result"].get("value")

    def wait_for(self, expression, timeout=30, interval=0.1):
        """Polls until the expression is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except CdpError:
                value = None  # the page is still loading
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"{expression!r} still {value!r} after {timeout} s; console: {self.console()}")

    def console(self):
        """What the page logged and threw: for failure messages."""
        out = []
        for session, method, params in self.browser.events:
            if session != self.session:
                continue
            if method == "Runtime.consoleAPICalled":
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                out.append(str(params["exceptionDetails"].get("exception", {}).get("description")))
        return out

    def insert_text(self, text):
        """Text as an input method commits it (no key events)."""
        self.call("Input.insertText", {"text": text})

    def press(self, name):
        """A named key of KEYS, down and up."""
        key = KEYS[name]
        self.call("Input.dispatchKeyEvent", {"type": "keyDown", **key})
        self.call("Input.dispatchKeyEvent", {"type": "keyUp", **{k: v for k, v in key.items() if k != "text"}})

    def type_keys(self, text):
        """Each character as its own key down and up, as a keyboard types it
        (what noVNC listens to; "\\r" is Enter). Letters, digits and spaces."""
        for c in text:
            if c == "\r":
                self.press("Enter")
                continue
            code = f"Key{c.upper()}" if c.isalpha() else f"Digit{c}" if c.isdigit() else "Space" if c == " " else ""
            vk = ord(c.upper()) if c.isalnum() or c == " " else 0
            self.call("Input.dispatchKeyEvent", {"type": "keyDown", "key": c, "code": code, "text": c,
                                                 "windowsVirtualKeyCode": vk})
            self.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": c, "code": code,
                                                 "windowsVirtualKeyCode": vk})

    def screenshot(self):
        """The viewport as PNG bytes."""
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])
