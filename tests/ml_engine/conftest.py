"""Fixtures for the model tests: the study's own people stored as assessments with outcomes, and
a server database with three stored versions for the hot-swap tests across processes."""

import shutil
from pathlib import Path

import pytest

from ml_engine.models import Assessment, Interface
from ml_engine.schema import FEATURES
from ml_engine.training import load_dataset
from tests.servers import ServerEnv, made_once

# Two more quick versions, stored and not active; a version's name carries the second it was made,
# so one second passes before each. One process for both: each costs seconds of imports.
_TRAIN_TWO_MORE = """
import json, time
from django.core.management import call_command
from ml_engine.models import ModelVersion
for _ in range(2):
    time.sleep(1)
    call_command("train", "--quick", "--no-activate")
print("VERSIONS=" + json.dumps(list(ModelVersion.objects.order_by("created_at").values_list("version", flat=True))))
"""


@pytest.fixture
def store_study_people(db):
    """``store_study_people(rows, source="api_key", flipped=False, recorded_by="")``: the study's
    (the CSV's) people at ``rows`` stored as REST assessments with their real outcome (the
    opposite one with ``flipped``) recorded by ``source`` (None: no outcome recorded)."""

    def store(rows: range, *, source: str | None = "api_key", flipped: bool = False, recorded_by: str = "") -> None:
        data = load_dataset()
        Assessment.objects.bulk_create(
            Assessment(
                interface=Interface.REST,
                features={f.key: None if x != x else float(x) for f, x in zip(FEATURES, data.X[i], strict=True)},
                risk=0.5,
                band="high",
                label=1,
                model_version="v",
                outcome=None if source is None else int(1 - data.y[i] if flipped else data.y[i]),
                outcome_source=source or "",
                outcome_recorded_by=recorded_by,
            )
            for i in rows
        )

    return store


@pytest.fixture(scope="session")
def _three_versions_server_base(_prepared_server_base, shared_tmp):
    """The server template (tests/conftest.py) with two more versions stored, made once per run;
    ``versions.json`` lists the three, oldest (the active one) first."""

    def prepare(base: Path) -> None:
        shutil.copytree(_prepared_server_base, base, dirs_exist_ok=True)
        out = ServerEnv(base).manage("shell", "-c", _TRAIN_TWO_MORE).stdout
        [line] = [line for line in out.splitlines() if line.startswith("VERSIONS=")]
        (base / "versions.json").write_text(line.removeprefix("VERSIONS="))

    return made_once(shared_tmp, "three-versions-template", prepare)


@pytest.fixture
def three_versions_env(_three_versions_server_base, tmp_path):
    """Like ``server_env``, over a database with three stored versions, the oldest active:
    ``stored_versions(env)`` (tests/servers.py) names them, oldest first."""
    return ServerEnv.copied_from(_three_versions_server_base, tmp_path / "server")


@pytest.fixture
def three_versions_redis_env(three_versions_env, redis_server):
    """``three_versions_env`` for daphne processes sharing the test's redis-server (REDIS_URL)."""
    three_versions_env.redis_url = redis_server.url
    return three_versions_env
