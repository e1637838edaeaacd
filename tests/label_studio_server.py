"""A real Label Studio for the tests, and headless Chromium to look at it.

``LabelStudio`` runs the ``label-studio`` of its own virtualenv (``make test``
creates ``.venv-ls``; ``ALHARNESS_LABEL_STUDIO`` names another executable) on
127.0.0.1 with SQLite in a temporary folder, with a test user whose legacy
API token the HTTP calls use. Everything is bounded: the server must answer
within ``START_TIMEOUT`` seconds, every request within ``REQUEST_TIMEOUT``,
and ``stop`` ends the server's whole process group (a context manager calls
it on any exit). Nothing leaves 127.0.0.1: Label Studio's version check,
Sentry and analytics are switched off, and Chromium resolves no other host.

``screenshot`` drives headless Chromium through the DevTools protocol over a
pipe (``--remote-debugging-pipe``: no port, no websocket library): it sets
the test user's session cookie, opens a page, waits until a JavaScript
condition holds and saves a PNG.
"""

from __future__ import annotations

import base64
import fcntl
import http.cookiejar
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LS_VENV = REPO / ".venv-ls"
START_TIMEOUT = 240.0  # a fresh SQLite database is migrated first
REQUEST_TIMEOUT = 60.0
USER, PASSWORD = "annotator@localhost", "alharness-test-password"
TOKEN = "alharness0test0token0" + "0" * 19  # a legacy API token (40 characters, as Label Studio makes them)


def executable() -> str | None:
    """The ``label-studio`` command to run, or None where there is none."""
    named = os.environ.get("ALHARNESS_LABEL_STUDIO")
    if named:
        return named if os.access(named, os.X_OK) else None
    exe = LS_VENV / "bin" / "label-studio"
    installed = any(LS_VENV.glob(".installed-*"))  # the Makefile's stamp: not a half-made virtualenv
    return str(exe) if installed and os.access(exe, os.X_OK) else None


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: be killed when the test process dies, even by SIGKILL (Linux; elsewhere stop() only)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class LabelStudioError(RuntimeError):
    pass


class LabelStudio:
    """A Label Studio server of the tests' own (see the module's docstring)."""

    def __init__(self, root: Path, document_root: Path):
        self.root, self.document_root = Path(root), Path(document_root)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.root / "label-studio.log"
        self.proc: subprocess.Popen | None = None

    # -- the server ------------------------------------------------------------------------------------

    def start(self) -> "LabelStudio":
        exe = executable()
        if exe is None:
            raise LabelStudioError("no label-studio executable (make test creates .venv-ls)")
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
        env.update({
            "HOME": str(self.root), "LABEL_STUDIO_BASE_DATA_DIR": str(data),
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(self.document_root),
            # only 127.0.0.1: no version check on PyPI, no Sentry, no analytics
            "LATEST_VERSION_CHECK": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "COLLECT_ANALYTICS": "false",
            "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost",
        })
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [exe, "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(data), "--username", USER, "--password", PASSWORD, "--user-token", TOKEN,
             "--enable-legacy-api-token", "--log-level", "WARNING"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.root,
            start_new_session=True,  # its own process group: stop() ends it and whatever it started
            preexec_fn=_die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise LabelStudioError(f"label-studio exited with {self.proc.returncode} before answering:\n{self.log_tail()}")
            try:
                me = self.api("GET", "/api/current-user/whoami", timeout=5)
                if me.get("email") != USER:  # another server on the port
                    raise LabelStudioError(f"{self.url} answers as {me.get('email')!r}, not the test user")
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout, ValueError):
                pass  # not up yet (ValueError: not JSON yet)
            except LabelStudioError as exc:
                if "HTTP 5" not in str(exc) and "HTTP 401" not in str(exc):
                    raise
            if time.monotonic() > deadline:
                raise LabelStudioError(f"label-studio did not answer within {START_TIMEOUT:g} s:\n{self.log_tail()}")
            time.sleep(0.5)

    def stop(self) -> None:
        """End the server's process group: politely, then by force."""
        if self.proc is not None and self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                except subprocess.TimeoutExpired:
                    continue
                try:  # the server is gone: so must be anything it left in its group
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                break
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "LabelStudio":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # -- the HTTP API ----------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, timeout: float = REQUEST_TIMEOUT,
                headers: dict[str, str] | None = None, opener: Any = None) -> bytes:
        url = self.url + path
        assert url.startswith("http://127.0.0.1:"), url  # the tests talk to nothing else
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Token {TOKEN}", **({"Content-Type": "application/json"} if body is not None else {}),
            **(headers or {})})
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with (opener or no_proxy).open(req, timeout=timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            raise LabelStudioError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:2000].decode(errors='replace')}") from None

    def api(self, method: str, path: str, body: Any = None, timeout: float = REQUEST_TIMEOUT) -> Any:
        raw = self.request(method, path, body, timeout)
        return json.loads(raw) if raw.strip() else None

    def session_cookie(self) -> tuple[str, str]:
        """(name, value) of a logged-in browser session of the test user (the login form, as a browser posts it)."""
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(jar))
        with opener.open(self.url + "/user/login/", timeout=REQUEST_TIMEOUT) as resp:
            resp.read()
        csrf = next(c.value for c in jar if c.name == "csrftoken")
        form = urllib.parse.urlencode({"email": USER, "password": PASSWORD, "csrfmiddlewaretoken": csrf,
                                       "persist_session": "on"}).encode()
        req = urllib.request.Request(self.url + "/user/login/", data=form, method="POST",
                                     headers={"Referer": self.url + "/user/login/", "X-CSRFToken": csrf})
        with opener.open(req, timeout=REQUEST_TIMEOUT) as resp:
            resp.read()
        session = [c for c in jar if c.name == "sessionid"]
        if not session:
            raise LabelStudioError("logging in as the test user gave no session cookie")
        return session[0].name, session[0].value


# -- headless Chromium over the DevTools pipe --------------------------------------------------------------


class _Pipe:
    """The DevTools protocol on Chromium's fds 3 (commands in) and 4 (replies out): NUL-terminated JSON."""

    def __init__(self, proc: subprocess.Popen, to_browser: int, from_browser: int):
        self.proc, self.w, self.r = proc, to_browser, from_browser
        self.buf, self.next_id = b"", 0

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}, **({"sessionId": session} if session else {})}
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self.buf:
                raw, self.buf = self.buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise TimeoutError(f"chromium did not answer {method} within {timeout:g} s")
            ready, _, _ = select.select([self.r], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the DevTools pipe during {method}")
                self.buf += chunk


def screenshot(url: str, cookie: tuple[str, str], out: Path, ready_js: str, timeout: float = 90.0,
               size: tuple[int, int] = (1400, 1000)) -> Any:
    """Open ``url`` in headless Chromium with the session ``cookie``, wait until ``ready_js`` (an expression)
    is truthy, save a PNG screenshot to ``out`` and return the expression's last value.

    Raises TimeoutError (after saving the screenshot as it is) when the page never gets ready."""
    exe = chromium()
    if exe is None:
        raise RuntimeError("headless Chromium is not installed")
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    # the child's ends above 4, so that moving them onto 3 and 4 clobbers neither
    child_in, child_out = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
    os.close(to_r)
    os.close(from_w)

    def wire() -> None:
        os.dup2(child_in, 3)
        os.dup2(child_out, 4)

    host = urllib.parse.urlsplit(url).hostname
    with tempfile.TemporaryDirectory(prefix="alharness-chromium-") as profile:
        proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
             f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {host}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(3, 4),
            preexec_fn=wire, start_new_session=True)
        os.close(child_in)
        os.close(child_out)
        pipe = _Pipe(proc, to_w, from_r)
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            pipe.call("Network.enable", session=session)
            pipe.call("Network.setCookie", {"name": cookie[0], "value": cookie[1], "url": url, "httpOnly": True},
                      session=session)
            pipe.call("Emulation.setDeviceMetricsOverride", {"width": size[0], "height": size[1],
                                                             "deviceScaleFactor": 1, "mobile": False}, session=session)
            pipe.call("Page.enable", session=session)
            pipe.call("Page.navigate", {"url": url}, session=session)
            deadline, value = time.monotonic() + timeout, None
            while time.monotonic() < deadline:
                got = pipe.call("Runtime.evaluate", {"expression": ready_js, "returnByValue": True}, session=session)
                value = got.get("result", {}).get("value")
                if value and not (isinstance(value, dict) and not value.get("ready", True)):
                    time.sleep(1.0)  # let the canvas paint what it has drawn
                    break
                time.sleep(0.5)
            else:
                value = None
            shot = pipe.call("Page.captureScreenshot", {"format": "png"}, session=session)
            Path(out).write_bytes(base64.b64decode(shot["data"]))
            if value is None:
                raise TimeoutError(f"{url}: the page was not ready within {timeout:g} s (screenshot in {out})")
            return value
        finally:
            try:
                pipe.call("Browser.close", timeout=5)
            except Exception:
                pass
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            os.close(to_w)
            os.close(from_r)
