"""A headless Chromium driven over the Chrome DevTools Protocol through a pipe
(``--remote-debugging-pipe``: JSON messages separated by NUL bytes on file descriptors 3 and 4),
so the browser test needs neither a websocket library nor Playwright, only the ``chromium``
binary. Small on purpose: open a page, run JavaScript, set a file input, take a screenshot.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
    # WebGL without a GPU: Chromium's software renderer (SwiftShader), which it no longer falls
    # back to by itself
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class CdpError(Exception):
    pass


class Browser:
    """One headless Chromium with one page (a flattened CDP session on it)."""

    def __init__(self, executable: str, *, width: int = 1280, height: int = 1000) -> None:
        self._profile = tempfile.mkdtemp(prefix="depthcli-chromium-")
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # high numbers first, so putting them on 3 and 4 in the child cannot clobber one another
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w)]

        def child_fds() -> None:
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", "--remote-debugging-pipe",
             f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=child_fds, pass_fds=(3, 4))
        for fd in (to_chrome_r, from_chrome_w, *high):
            os.close(fd)
        self._out = os.fdopen(to_chrome_w, "wb", buffering=0)
        self._in = os.fdopen(from_chrome_r, "rb", buffering=0)
        self._next_id = 0
        self._replies: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self.events: queue.Queue = queue.Queue()
        self.console: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    # ----------------------------------------------------------------------- protocol
    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = self._in.read(65536)
            if not chunk:
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message and message["id"] in self._replies:
                    self._replies[message["id"]].put(message)
                else:
                    if message.get("method") == "Runtime.consoleAPICalled":
                        args = message["params"].get("args", [])
                        self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
                    if message.get("method") == "Runtime.exceptionThrown":
                        details = message["params"]["exceptionDetails"]
                        self.console.append("exception: " + str(details.get("exception", {}).get("description",
                                                                                                 details.get("text"))))
                    self.events.put(message)

    def call(self, method: str, *, session: bool = False, timeout: float = 60, **params: Any) -> dict:
        with self._lock:
            self._next_id += 1
            msg_id = self._next_id
            self._replies[msg_id] = queue.Queue()
        message = {"id": msg_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self._out.write(json.dumps(message).encode() + b"\0")
        try:
            reply = self._replies[msg_id].get(timeout=timeout)
        except queue.Empty:
            raise CdpError(f"{method}: no reply in {timeout} s") from None
        finally:
            self._replies.pop(msg_id, None)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    # ----------------------------------------------------------------------- page
    def goto(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("document.readyState === 'complete'", timeout=60)

    def evaluate(self, expression: str, *, timeout: float = 60) -> Any:
        result = self.call("Runtime.evaluate", session=True, timeout=timeout, expression=expression,
                           awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CdpError(f"{expression[:60]}...: {details.get('exception', {}).get('description')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise CdpError(f"timed out after {timeout} s waiting for {expression}; console: {self.console[-5:]}")
            time.sleep(0.2)

    def set_file(self, selector: str, path: Path) -> None:
        root = self.call("DOM.getDocument", session=True)["root"]["nodeId"]
        node = self.call("DOM.querySelector", session=True, nodeId=root, selector=selector)["nodeId"]
        self.call("DOM.setFileInputFiles", session=True, nodeId=node, files=[str(path)])

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", session=True, format="png")["data"])

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (CdpError, OSError):
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
        for stream in (self._out, self._in):
            try:
                stream.close()
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)
