"""Safe defaults (README: "Access and roles"): `make run` with DEBUG serves loopback only unless
asked, and production refuses to start before `collectstatic`, saying what to run."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


def host_check(host: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", "run-host-check", f"HOST={host}"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_DEBUG": "1", "ALLOW_REMOTE_DEBUG": "0", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::", "example.org"])
def test_make_run_with_debug_refuses_a_remote_host(host):
    result = host_check(host)
    assert result.returncode != 0
    assert f"refusing HOST={host} with DJANGO_DEBUG on" in result.stderr and "ALLOW_REMOTE_DEBUG=1" in result.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(
    ("host", "env"),
    [
        ("127.0.0.1", {}),
        ("localhost", {}),
        ("::1", {}),
        ("0.0.0.0", {"ALLOW_REMOTE_DEBUG": "1"}),
        ("0.0.0.0", {"DJANGO_DEBUG": "0"}),
    ],
)
def test_make_run_allows_loopback_production_or_an_explicit_yes(host, env):
    assert host_check(host, **env).returncode == 0


def serve(static_root: Path, port: int, tmp_path: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "a-long-random-production-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "DJANGO_STATIC_ROOT": str(static_root),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "project.serve", "-b", "127.0.0.1", "-p", str(port), "asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_production_refuses_to_start_before_collectstatic(tmp_path, collected_static):
    process = serve(tmp_path / "static", free_port(), tmp_path)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "Static files were never collected" in output and "manage.py collectstatic --no-input" in output

    # After `manage.py collectstatic --no-input` (run once for the whole test run: the fixture in
    # tests/conftest.py), it starts.
    port = free_port()
    process = serve(collected_static, port, tmp_path)
    try:
        wait_for_port(port, proc=process)
    finally:
        process.terminate()
        process.wait(30)
