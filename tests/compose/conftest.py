"""The compose stack, built and started once for tests/compose (`make compose-test`).

Tests marked ``compose`` run only when asked for with ``-m compose``: they build images and start
containers, which plain `make test` must not do. Where the official base images can neither be
found locally nor pulled, docker/standin/build.sh builds stand-ins from Debian packages.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field

import pytest

from tests.compose.commands import ROOT, log, run
from tests.samples import OFFICIAL_IMAGES
from tests.servers import free_port

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PROJECT = "diabetes-compose-test"
# A throttle small enough to exhaust in a few dozen requests (README: "Docker Compose").
THROTTLE = "25/hour"
START_TIMEOUT = 900  # seconds for build, migrate, first training and both replicas healthy


def pytest_collection_modifyitems(config, items):
    """Deselect compose tests unless the -m expression names them (`make compose-test`)."""
    if "compose" in (config.getoption("markexpr") or ""):
        return
    kept = [item for item in items if item.get_closest_marker("compose") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


def _docker_or_fail() -> None:
    problem = None
    if shutil.which("docker") is None:
        problem = "the docker command is not installed"
    elif subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode != 0:
        problem = "the Docker daemon does not answer (`docker info` failed)"
    if problem:
        if IN_CI:
            pytest.fail(f"{problem}; CI must run the compose test (.ci/run starts dockerd)")
        pytest.skip(f"SKIPPED LOUDLY: {problem}")


def compose_command() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` (v2) nor `docker-compose` (v1) is installed")


def base_images() -> tuple[dict[str, str], bool]:
    """The official images when present or pullable, else the Debian stand-ins (built when missing)."""
    chosen = {name: os.environ[name] for name in OFFICIAL_IMAGES if os.environ.get(name)}
    if len(chosen) == len(OFFICIAL_IMAGES):
        return chosen, False
    official = all(
        run("docker", "image", "inspect", image, check=False, quiet=True).returncode == 0
        or run("docker", "pull", "-q", image, check=False, quiet=True, timeout=300).returncode == 0
        for name, image in OFFICIAL_IMAGES.items()
        if name not in chosen
    )
    if official:
        return {**OFFICIAL_IMAGES, **chosen}, False
    log("official base images cannot be pulled here: using stand-ins built from Debian packages")
    started = time.monotonic()
    out = run("bash", "docker/standin/build.sh", timeout=1800).stdout
    log(f"stand-in images ready in {time.monotonic() - started:.0f} s")
    standins = dict(
        line.split("=", 1) for line in out.splitlines() if "=" in line and line.split("=")[0] in OFFICIAL_IMAGES
    )
    return {**standins, **chosen}, True


@dataclass
class Stack:
    """A running compose project; `compose(...)` runs the compose CLI against it."""

    cmd: list[str]
    env: dict[str, str]
    port: int
    replicas: dict[str, str] = field(default_factory=dict)  # address on the stack network -> container name

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def compose(self, *args: str, timeout: float = 600, check: bool = True):
        return run(*self.cmd, *args, env=self.env, timeout=timeout, check=check)

    def web_containers(self) -> list[str]:
        out = run(
            "docker",
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={PROJECT}",
            "--filter",
            "label=com.docker.compose.service=web",
        ).stdout
        return out.split()

    def inspect(self, container: str) -> dict:
        return json.loads(run("docker", "inspect", container).stdout)[0]

    def refresh_replicas(self) -> dict[str, str]:
        self.replicas = {}
        for container in self.web_containers():
            info = self.inspect(container)
            for network in info["NetworkSettings"]["Networks"].values():
                self.replicas[network["IPAddress"]] = info["Name"].lstrip("/")
        return self.replicas

    def replica(self, upstream: str) -> str:
        """The container behind an X-Upstream value (`ADDRESS:PORT`)."""
        address = upstream.split(",")[-1].strip().rsplit(":", 1)[0]
        return self.replicas.get(address, f"unknown replica {upstream}")

    def wait_healthy(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        states: list[str] = []
        while time.monotonic() < deadline:
            containers = self.web_containers()
            states = [self.inspect(c)["State"].get("Health", {}).get("Status", "none") for c in containers]
            if len(containers) == count and all(s == "healthy" for s in states):
                return
            time.sleep(3)
        raise AssertionError(f"web replicas not healthy within {timeout} s: {states}")


@pytest.fixture(scope="session")
def stack():
    _docker_or_fail()
    cmd = compose_command()
    images, standins = base_images()
    port = free_port()
    env = {
        **os.environ,
        **images,
        "COMPOSE_PROJECT_NAME": PROJECT,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "PROXY_PORT": str(port),
        "DJANGO_CSRF_TRUSTED_ORIGINS": f"http://127.0.0.1:{port}",
        "API_THROTTLE_ANON": THROTTLE,
        "DJANGO_METRICS_TOKEN": secrets.token_urlsafe(24),
    }
    if standins:
        # Stand-in builds reach the Debian mirror and PyPI only through the host's network.
        env.setdefault("BUILD_NETWORK", "host")
    stack = Stack(cmd=cmd, env=env, port=port)
    log(f"compose: {' '.join(cmd)}; base images: {', '.join(images.values())}; port 127.0.0.1:{port}")
    stack.compose("down", "-v", "--remove-orphans", check=False)
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    try:
        started = time.monotonic()
        stack.compose("build", timeout=1800)
        log(f"images built in {time.monotonic() - started:.0f} s")
        started = time.monotonic()
        stack.compose("up", "-d", "--scale", "web=2", timeout=START_TIMEOUT)
        stack.wait_healthy(2, START_TIMEOUT)
        stack.refresh_replicas()
        log(f"stack healthy in {time.monotonic() - started:.0f} s; replicas: {stack.replicas}")
        yield stack
    finally:
        logs = stack.compose("logs", "--no-color", "--timestamps", check=False, timeout=120)
        (artifacts / "compose.log").write_text(logs.stdout + logs.stderr)
        stack.compose("down", "-v", "--remove-orphans", check=False, timeout=300)
