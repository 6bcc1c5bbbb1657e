"""Hot swap across processes: `activate` reaches open sockets on every daphne within 2 s."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from typing import Any

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


# README: "Model registry" (shadow and canary): set from one process, followed by every daphne.


def rest_answer(server, features: dict | None = None) -> dict:
    body = json.dumps({"features": features or {"glucose": 120}}).encode()
    request = urllib.request.Request(f"{server.http}/api/v1/predict", body, {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request, timeout=TIMEOUT))


def plan_seen(server) -> dict:
    """The shadow and canary a process has loaded, from its /metrics (open to operators; DEBUG here)."""
    text = urllib.request.urlopen(f"{server.http}/metrics", timeout=TIMEOUT).read().decode()
    seen: dict[str, Any] = {"shadow": None, "canary": None, "share": None}
    for line in text.splitlines():
        if line.startswith("diabetes_serving_plan_info{") and line.endswith(" 1.0"):
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(","))
            seen[labels["role"].strip('"')] = labels["version"].strip('"')
        if line.startswith("diabetes_canary_share "):
            seen["share"] = float(line.split()[-1])
    return seen


def wait_until(check, what: str) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < TIMEOUT, f"{what} never happened"
        time.sleep(0.05)
    return time.monotonic() - started


def stored_shadows(env) -> list[list]:
    """(interface, model_version, shadow_version, shadow_risk is set) of every stored assessment."""
    out = env.manage(
        "shell",
        "-c",
        "import json; from ml_engine.models import Assessment as A; print(json.dumps([[a.interface, "
        "a.model_version, a.shadow_version, a.shadow_risk is not None] for a in A.objects.order_by('pk')]))",
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_a_shadow_and_a_canary_reach_every_process_within_2_s(redis_env):
    server_env = redis_env
    server_env.manage("train", "--quick", "--no-activate")
    time.sleep(1)  # version names carry the second they were made
    server_env.manage("train", "--quick", "--no-activate")
    active, shadow, canary = versions(server_env)
    with daphne_servers(server_env, 2) as servers:
        assert [rest_answer(s)["model"]["version"] for s in servers] == [active, active]
        server_env.manage("shadow", shadow)
        elapsed = wait_until(lambda: all(plan_seen(s)["shadow"] == shadow for s in servers), "the shadow")
        assert elapsed < SWITCH_DEADLINE, f"the shadow took {elapsed:.2f} s"
        server_env.manage("canary", canary, "--share", "1")
        elapsed = wait_until(
            lambda: all(rest_answer(s)["model"]["version"] == canary for s in servers),
            "the canary answering",
        )
        assert elapsed < SWITCH_DEADLINE, f"the canary took {elapsed:.2f} s"
        for server in servers:
            reply = rest_answer(server)
            assert shadow not in json.dumps(reply) and not any("shadow" in key for key in reply)
        # Every REST answer above was stored with the shadow's risk beside it, and who answered.
        rows = stored_shadows(server_env)
        assert rows[:2] == [["rest", active, "", False]] * 2  # before the shadow
        assert all(row[0] == "rest" and row[1] in (active, canary) for row in rows[2:])
        assert all(row[2:] == [shadow, True] for row in rows[2:]) and rows[-1][1] == canary
        server_env.manage("activate", canary)  # ends both, everywhere
        elapsed = wait_until(
            lambda: all(plan_seen(s)["shadow"] is None and plan_seen(s)["canary"] is None for s in servers),
            "the end of the plan",
        )
        assert elapsed < SWITCH_DEADLINE, f"ending the plan took {elapsed:.2f} s"
        assert [rest_answer(s)["model"]["version"] for s in servers] == [canary, canary]
        assert all(server.proc.poll() is None for server in servers)


def test_a_live_socket_keeps_the_version_it_drew_across_plan_changes(server_env):
    server_env.manage("train", "--quick", "--no-activate")
    active, canary = versions(server_env)
    with daphne_servers(server_env, 1) as [server]:
        rest_answer(server)  # the process has loaded its model
        server_env.manage("canary", canary, "--share", "1")
        wait_until(lambda: plan_seen(server)["canary"] == canary, "the canary")
        with server.connect() as on_canary:
            assert version_served(on_canary, 1) == canary
            # No new session joins it now; the one it has keeps it.
            server_env.manage("canary", canary, "--share", "0")
            wait_until(lambda: plan_seen(server)["share"] == 0.0, "the new share")
            with server.connect() as on_active:
                for seq in range(2, 12):
                    assert version_served(on_canary, seq) == canary
                    assert version_served(on_active, seq) == active
                # Activating the canary's version: its session sees no change, the other follows.
                server_env.manage("activate", canary)
                wait_for_version([on_active], canary, 100)
                for seq in range(200, 205):
                    assert version_served(on_canary, seq) == canary
            # A canary that ends sends its sessions back to the active version.
            server_env.manage("canary", active, "--share", "1")
            wait_until(lambda: plan_seen(server)["canary"] == active, "the second canary")
            assert version_served(on_canary, 300) == canary  # drawn before: stays on the active one
            with server.connect() as late:
                assert version_served(late, 1) == active
                server_env.manage("canary", "--off")
                wait_for_version([late], canary, 1)
