"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol.

No browser download and no driver: the DevTools WebSocket, through the `websockets`
package that uvicorn already brings. Every wait is bounded.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class Browser:
    def __init__(self, profile: Path, *, width: int = 1400, height: int = 1000) -> None:
        assert CHROMIUM, "headless Chromium is needed: apt-get install -y chromium"
        profile.mkdir(parents=True, exist_ok=True)
        self.log_path = profile / "chromium.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]
            + ["about:blank"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.requests: list[str] = []  # every URL the page asked for
        self._ids = itertools.count(1)
        self._stack = contextlib.ExitStack()
        self._ws = self._stack.enter_context(self._connect(profile / "DevToolsActivePort"))
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Network.enable")

    def _connect(self, port_file: Path, timeout: float = 30.0) -> ClientConnection:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"chromium exited: {self.log_path.read_text()[-2000:]}")
            if port_file.exists() and port_file.read_text().strip():
                port = int(port_file.read_text().split()[0])
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                    pages = [t for t in json.loads(r.read()) if t["type"] == "page"]
                if pages:
                    return connect(pages[0]["webSocketDebuggerUrl"], max_size=None)
            time.sleep(0.1)
        raise AssertionError(f"chromium's DevTools did not answer in {timeout} s")

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("method") == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float = 30.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.evaluate(expression)
            except AssertionError as exc:  # the page may still be loading
                last = exc
            else:
                if last:
                    return last
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what or expression} (last: {last!r})")

    def screenshot(self, path: Path, *, full_page: bool = True, scale: float = 1.0) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params |= {
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                         "scale": scale},
            }  # fmt: skip
        data = self.call("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self._log.close()
