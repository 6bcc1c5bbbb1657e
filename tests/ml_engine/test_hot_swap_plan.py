"""Shadow and canary across processes (README: "Model registry"): set from one process with
`manage.py shadow` and `canary`, followed by every daphne within 2 s; a live socket keeps the
version it drew. `activate` across processes: test_hot_swap.py."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from tests.hot_swap import SWITCH_DEADLINE, rest_answer, stored_versions, version_served, wait_for_version
from tests.samples import TIMEOUT
from tests.servers import daphne_servers

pytestmark = [pytest.mark.redis, pytest.mark.slow]


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


def test_a_shadow_and_a_canary_reach_every_process_within_2_s(three_versions_redis_env):
    server_env = three_versions_redis_env
    active, shadow, canary = stored_versions(server_env)
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


def test_a_live_socket_keeps_the_version_it_drew_across_plan_changes(three_versions_env):
    server_env = three_versions_env
    active, canary, _ = stored_versions(server_env)
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
