"""Real processes for tests that cross process boundaries: redis-server and daphne, and the
few calls a test makes to them (a WebSocket to daphne, one frame and its reply, a CSRF token).

Each server gets a free port on 127.0.0.1 and is stopped when its context ends. Nothing here
talks to anything but loopback. Plain functions: the fixtures that start these servers are in
tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from tests.samples import PERSON, TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
# Seconds a server may take to start listening: a couple normally, far more on a busy shared
# machine (a bound on waiting, never a measurement).
START_TIMEOUT = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, *, timeout: float = START_TIMEOUT, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def made_once(shared: Path, name: str, make: Callable[[Path], None]) -> Path:
    """``shared / name``, made by ``make(path)`` the first time any test process of this run asks
    for it; the others wait on a lock and then use it as it is (so it must only ever be read or
    copied). Each ``manage.py`` or daphne process costs seconds of CPU importing Django,
    scikit-learn and SciPy, and xdist runs several test processes on the same cores."""
    path = shared / name
    with (shared / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (shared / f"{name}.done").exists():
            shutil.rmtree(path, ignore_errors=True)  # what a failed attempt left
            path.mkdir()
            make(path)
            (shared / f"{name}.done").touch()
    return path


# `manage.py collectstatic --no-input -v0` as the image runs it (Dockerfile), with the packages of
# requirements.txt only: brotli is not one of them (here it comes with the test tools), so
# WhiteNoise makes gzip copies only, as in production; brotli's copies took a minute of CPU.
_COLLECTSTATIC_AS_IN_THE_IMAGE = (
    "import runpy, sys; sys.modules['brotli'] = None; "
    "sys.argv = ['manage.py', 'collectstatic', '--no-input', '-v0']; runpy.run_path('manage.py', run_name='__main__')"
)


def collect_static(static_root: Path) -> None:
    """What `manage.py collectstatic` makes with the production settings (hashed names, compressed
    copies), into ``static_root``: give it to production-like servers as DJANGO_STATIC_ROOT."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    environ.update(DJANGO_DEBUG="0", DJANGO_SECRET_KEY="x" * 60, DJANGO_STATIC_ROOT=str(static_root))
    subprocess.run(
        [sys.executable, "-c", _COLLECTSTATIC_AS_IN_THE_IMAGE], cwd=ROOT, env=environ, check=True, timeout=300
    )


def production_settings(static_root: Path) -> dict[str, str]:
    """Environment for a daphne process with DEBUG off, as in production, on plain HTTP over
    loopback (so no HTTPS redirect, secure cookies or HSTS), serving ``collect_static``'s files."""
    return {
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "a-test-secret-key-that-is-long-enough-for-the-deploy-checks-0123456789",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_SESSION_COOKIE_SECURE": "0",
        "DJANGO_CSRF_COOKIE_SECURE": "0",
        "DJANGO_SECURE_HSTS_SECONDS": "0",
        "DJANGO_STATIC_ROOT": str(static_root),
    }


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


@dataclass
class RedisServer:
    """A throw-away redis-server: no persistence, its own port, killable mid-test."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def freeze(self) -> None:
        """Stop the process (SIGSTOP): it keeps its connections and answers nothing."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen process run again (SIGCONT); harmless on one that is not frozen."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)


@dataclass
class ServerEnv:
    """Settings shared by every daphne process of one test: one database and one model folder."""

    base: Path
    redis_url: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def copied_from(cls, template: Path, base: Path) -> ServerEnv:
        """An environment over a copy of ``template`` (a migrated database and a trained model)."""
        shutil.copytree(template, base)
        return cls(base)

    @property
    def environ(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "MODEL_"))
        }
        env.update(
            DJANGO_DEBUG="1",
            DJANGO_SETTINGS_MODULE="project.settings",
            DATABASE_URL=os.environ.get("TEST_SERVER_DATABASE_URL") or f"sqlite:///{self.base / 'db.sqlite3'}",
            MODEL_DIR=str(self.base / "models"),
            PYTHONUNBUFFERED="1",
            # Shared tiles appear at once here; the tests of the delay itself set it in ``extra``.
            BOARD_DELAY_S="0",
        )
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        env.update(self.extra)
        return env

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.environ,
            capture_output=True,
            text=True,
            check=check,
            timeout=300,
        )


@dataclass
class DaphneServer:
    env: ServerEnv
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    flags: tuple[str, ...] = ()  # daphne flags on top of the production options
    preexec_fn: Callable[[], None] | None = None  # run in the child before daphne (resource limits)
    application: str = "asgi:application"  # another for the benchmark's floor (bench/floor.py)

    @property
    def http(self) -> Origin:
        """The server's origin (what its own pages send in a WebSocket handshake) and URL base."""
        return Origin(f"http://127.0.0.1:{self.port}")

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def process(self) -> subprocess.Popen:
        """The server's process; only once ``start`` ran."""
        if self.proc is None:
            raise RuntimeError(f"the daphne server on port {self.port} was not started")
        return self.proc

    def start(self) -> DaphneServer:
        self.log_path = self.env.base / f"daphne-{self.port}.log"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            # The production options are project.serve's defaults; flags only add or override.
            [
                sys.executable,
                "-m",
                "project.serve",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                *self.flags,
                self.application,
            ],
            cwd=ROOT,
            env=self.env.environ,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=self.preexec_fn,
        )
        wait_for_port(self.port, proc=self.proc)
        return self

    def connect(self, path: str = "/ws/predict/", *, source: str | None = None, **options) -> ClientConnection:
        """A WebSocket to ``path`` from the site's own origin; use it in a ``with`` so it is closed
        whatever the test asserts. ``source`` is the loopback address to connect from (another
        client than 127.0.0.1: "127.0.0.2"...); ``options`` go to websockets' ``connect``."""
        if source is not None:
            options["source_address"] = (source, 0)
        return connect(f"{self.ws}{path}", **{"origin": self.http, "open_timeout": TIMEOUT, **options})

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


@contextlib.contextmanager
def daphne_servers(env: ServerEnv, count: int = 1, flags: tuple[str, ...] = ()) -> Iterator[list[DaphneServer]]:
    servers = [DaphneServer(env, flags=flags) for _ in range(count)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def ask(ws: ClientConnection, message: dict, *, timeout: float = TIMEOUT) -> dict:
    """Send one frame on a live socket and return the next frame it receives, decoded."""
    ws.send(json.dumps(message))
    return json.loads(ws.recv(timeout=timeout))


def share(ws: ClientConnection, board: str | None, *, timeout: float = TIMEOUT) -> dict:
    """Turn sharing on ``board`` on (or off with None) on a live socket; the server's reply."""
    reply = ask(ws, {"type": "share", "board": board}, timeout=timeout)
    assert reply["type"] == "shared" and reply["board"] == board, reply
    return reply


def calm_prediction(server: DaphneServer) -> dict:
    """What a new, well-behaved live socket is answered for PERSON (a server that still serves
    others answers with a prediction)."""
    with server.connect() as calm:
        return ask(calm, {"type": "update", "seq": 0, "features": PERSON})


def wait_until(predicate: Callable[[], object], what: str, *, timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` until it is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def csrf_token(html: str) -> str:
    """The CSRF token of the form in ``html`` (what a browser posts back)."""
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "the page has a form with a CSRF token"
    return match.group(1)
