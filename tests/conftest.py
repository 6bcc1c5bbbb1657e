"""Shared fixtures: a model trained once per test session, Redis and daphne processes."""

from __future__ import annotations

import os
import shutil

import pytest
from django.conf import settings

from tests.servers import RedisServer, ServerEnv, redis_server_binary

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# What one quick training run produced (the served candidate only; the full comparison is tested
# once, in tests/ml_engine/test_commands.py); rows are re-created from it after a test flushes the
# database (transactional tests), so the model trains only once per session.
_TRAINED: dict = {}
_TRAINED_ARTIFACT: dict = {}


@pytest.fixture(autouse=True, scope="session")
def _monitoring_by_hand():
    """In-process tests write prediction counts with ``tally.flush()`` and compute the monitoring
    figures afresh (README: "Monitoring"); daphne processes started by tests keep the defaults."""
    settings.PREDICTION_COUNT_FLUSH_SECONDS = 0
    settings.MONITOR_CACHE_SECONDS = 0


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("models")
    settings.MODEL_DIR = path
    return path


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker, model_dir):
    from ml_engine.models import ModelArtifact, ModelVersion
    from ml_engine.services import model_train

    with django_db_blocker.unblock():
        record, _ = model_train(quick=True)
        _TRAINED.update({f.name: getattr(record, f.name) for f in ModelVersion._meta.fields if f.name != "id"})
        stored = ModelArtifact.objects.get(model_version=record)
        _TRAINED_ARTIFACT.update(content=bytes(stored.content), size=stored.size)


@pytest.fixture
def served_model(db, model_dir):
    """The session's model, active in the database and loaded in this process."""
    from ml_engine.models import ModelVersion
    from ml_engine.registry import active_model, store_version

    record = ModelVersion.objects.filter(version=_TRAINED["version"]).first()
    if record is None:
        record = store_version(fields=_TRAINED, content=_TRAINED_ARTIFACT["content"])
    ModelVersion.objects.exclude(pk=record.pk).update(is_active=False)
    if not record.is_active:
        record.is_active = True
        record.save(update_fields=["is_active"])
    active_model.reset()
    return active_model.get()


@pytest.fixture
def outcomes_key(db):
    """Test-client headers carrying a fresh API key with the outcomes scope."""
    from api.models import ApiKey

    _, key = ApiKey.objects.create_key(name="test clinic", scopes=["outcomes"])
    return {"HTTP_AUTHORIZATION": f"Api-Key {key}"}


def _require_redis() -> None:
    if redis_server_binary() is None:
        if IN_CI:
            pytest.fail("redis-server is required in CI (.ci/run installs it)")
        pytest.skip("SKIPPED LOUDLY: redis-server is not installed; `apt-get install redis-server` to run this")


@pytest.fixture
def redis_server():
    _require_redis()
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def _prepared_server_base(tmp_path_factory):
    """A migrated database with one trained model, made once; tests get their own copy."""
    base = tmp_path_factory.mktemp("server-template")
    env = ServerEnv(base)
    env.manage("migrate", "-v0")
    env.manage("train", "--quick")
    return base


@pytest.fixture
def server_env(_prepared_server_base, tmp_path):
    """Environment for daphne processes started by a test: own SQLite copy and model folder."""
    base = tmp_path / "server"
    shutil.copytree(_prepared_server_base, base)
    return ServerEnv(base)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium, launched by Playwright (tests/browser.py): one per test module;
    tests open their own pages or contexts in it."""
    from tests.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium

    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
