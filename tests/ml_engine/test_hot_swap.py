"""Hot swap across processes: `activate` reaches open sockets on every daphne within 2 s, and a
version whose artifact does not load never replaces a working one. Shadow and canary across
processes: test_hot_swap_plan.py."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request

import pytest

from tests.hot_swap import SWITCH_DEADLINE, rest_answer, stored_versions, version_served, wait_for_version
from tests.samples import TIMEOUT
from tests.servers import daphne_servers

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_activate_switches_open_sockets_on_every_process(three_versions_redis_env):
    env = three_versions_redis_env
    older, newer, _ = stored_versions(env)  # the older one active
    with daphne_servers(env, 2) as servers, contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(server.connect()) for server in servers]
        assert [version_served(ws, 1) for ws in sockets] == [older, older]
        env.manage("activate", newer)  # forward
        elapsed = wait_for_version(sockets, newer, 1)
        assert elapsed < SWITCH_DEADLINE, f"took {elapsed:.2f} s"
        env.manage("activate", older)  # and roll back
        elapsed = wait_for_version(sockets, older, 100)
        assert elapsed < SWITCH_DEADLINE, f"took {elapsed:.2f} s"
        for server in servers:  # REST follows too, and nothing restarted
            assert rest_answer(server)["model"]["version"] == older
            assert server.process.poll() is None


def test_an_artifact_that_fails_to_load_never_replaces_a_working_model(three_versions_env):
    env = three_versions_env
    working, broken, _ = stored_versions(env)  # the working one active, the other stored beside it
    with daphne_servers(env, 1) as [server]:
        with server.connect() as ws:
            assert version_served(ws, 1) == working
            env.manage(  # the stored bytes go bad after training, as a disk or a bad restore might
                "shell",
                "-c",
                "from ml_engine.models import ModelArtifact as A; "
                f"A.objects.filter(model_version__version='{broken}').update(content=b'corrupted after training')",
            )
            refused = env.manage("activate", broken, check=False)
            assert refused.returncode != 0 and "sha256" in refused.stderr
            # Force it active behind the registry's back, as a bad deploy or a disk fault might.
            env.manage(
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
    listing = env.manage("models").stdout
    assert "does not load" in listing and "sha256" in listing
