"""Hot swap across processes: `activate` reaches open sockets on every daphne within 2 s."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request

import pytest

from tests.samples import TIMEOUT
from tests.servers import ask, daphne_servers

SWITCH_DEADLINE = 2.0  # README "Model registry": every running process serves the new version within 2 s

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def versions(env) -> list[str]:
    """Stored versions, oldest first, as `manage.py models` lists them."""
    lines = env.manage("models").stdout.splitlines()
    return [line.split()[0] for line in lines if line[:8].isdigit()]


def version_served(ws, seq: int) -> str:
    reply = ask(ws, {"type": "update", "seq": seq, "features": {"glucose": 100 + seq % 50}})
    assert reply["type"] == "prediction", reply
    return reply["model"]["version"]


def wait_for_version(sockets, version: str, start_seq: int) -> float:
    """Seconds until every socket's next prediction reports ``version``."""
    started = time.monotonic()
    pending = list(sockets)
    seq = start_seq
    while pending:
        seq += 1
        pending = [ws for ws in pending if version_served(ws, seq) != version]
        if pending:
            assert time.monotonic() - started < TIMEOUT, "the new version never arrived"
            time.sleep(0.05)
    return time.monotonic() - started


def test_activate_switches_open_sockets_on_every_process(redis_env):
    redis_env.manage("train", "--quick")  # a second version, now active
    older, newer = versions(redis_env)
    with daphne_servers(redis_env, 2) as servers, contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(server.connect()) for server in servers]
        assert [version_served(ws, 1) for ws in sockets] == [newer, newer]
        redis_env.manage("activate", older)  # roll back
        elapsed = wait_for_version(sockets, older, 1)
        assert elapsed < SWITCH_DEADLINE, f"took {elapsed:.2f} s"
        redis_env.manage("activate", newer)  # and forward again
        elapsed = wait_for_version(sockets, newer, 100)
        assert elapsed < SWITCH_DEADLINE, f"took {elapsed:.2f} s"
        for server in servers:  # REST follows too, and nothing restarted
            body = json.dumps({"features": {"glucose": 120}}).encode()
            headers = {"Content-Type": "application/json"}
            request = urllib.request.Request(f"{server.http}/api/v1/predict", body, headers)
            assert json.load(urllib.request.urlopen(request, timeout=TIMEOUT))["model"]["version"] == newer
            assert server.proc.poll() is None


def test_an_artifact_that_fails_to_load_never_replaces_a_working_model(server_env):
    [working] = versions(server_env)
    server_env.manage("train", "--quick", "--no-activate")
    _, broken = versions(server_env)
    with daphne_servers(server_env, 1) as [server]:
        with server.connect() as ws:
            assert version_served(ws, 1) == working
            server_env.manage(  # the stored bytes go bad after training, as a disk or a bad restore might
                "shell",
                "-c",
                "from ml_engine.models import ModelArtifact as A; "
                f"A.objects.filter(model_version__version='{broken}').update(content=b'corrupted after training')",
            )
            refused = server_env.manage("activate", broken, check=False)
            assert refused.returncode != 0 and "sha256" in refused.stderr
            # Force it active behind the registry's back, as a bad deploy or a disk fault might.
            server_env.manage(
                "shell",
                "-c",
                "from ml_engine.models import ModelVersion as M; "
                f"M.objects.update(is_active=False); M.objects.filter(version='{broken}').update(is_active=True)",
            )
            time.sleep(1.5)  # several watcher periods
            assert version_served(ws, 2) == working  # the open socket keeps the working model
        ready = json.load(urllib.request.urlopen(f"{server.http}/readyz", timeout=TIMEOUT))
        assert ready["model_version"] == working
        assert broken in ready["checks"]["model"] and "sha256" in ready["checks"]["model"]
        assert "Still serving" in server.log()
    listing = server_env.manage("models").stdout
    assert "does not load" in listing and "sha256" in listing
