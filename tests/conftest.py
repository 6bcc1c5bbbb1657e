"""Shared fixtures: a model trained once per test session, Redis and daphne processes, kiosk
boards in Redis, and headless Chromium with pages closed after each test.

Fixtures used by the tests of one folder only live in that folder's conftest.py (tests/live:
in-process sockets; tests/security: a daphne per test and a raw HTTP client; tests/api: no
throttling). Sample data is in tests/samples.py; plain helpers in tests/servers.py,
tests/browser.py and tests/websocket_raw.py.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from tests.servers import RedisServer, ServerEnv, collect_static, made_once, redis_server_binary

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# What one quick training run produced (the served candidate only; the full comparison is tested
# once, in tests/ml_engine/test_commands.py); rows are re-created from it after a test flushes the
# database (transactional tests), so the model trains only once per session.
_TRAINED: dict = {}
_TRAINED_ARTIFACT: dict = {}


def pytest_collection_modifyitems(config, items):
    """Tests marked load run only when the -m expression names them (`make load-test`): they
    measure a calm client beside an attack, which means nothing on a machine busy with the rest
    of the suite.

    Under xdist (`make test`: whole files per worker, in collection order), the files with the
    most tests marked slow go first and the quick ones fill in at the end: a process-starting
    file handed out last would run alone while the other workers sit idle. Each file's own order
    is kept."""
    if "load" not in (config.getoption("markexpr") or ""):
        kept = [item for item in items if item.get_closest_marker("load") is None]
        if len(kept) != len(items):
            config.hook.pytest_deselected(items=[item for item in items if item not in kept])
            items[:] = kept
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    size = Counter(item.path for item in items)
    first_seen = {path: i for i, path in enumerate(dict.fromkeys(item.path for item in items))}
    items.sort(key=lambda item: (-slow[item.path], -size[item.path], first_seen[item.path]))


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
def no_active_model(served_model):
    """No model version is active and none is loaded in this process (what a fresh database
    looks like); the next test loads its own again."""
    from ml_engine.models import ModelVersion
    from ml_engine.registry import active_model

    ModelVersion.objects.update(is_active=False)
    active_model.reset()
    yield
    active_model.reset()


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


def _own_redis_server() -> Iterator[RedisServer]:
    _require_redis()
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def redis_server():
    """A redis-server of this test's own on a free port, killed at the end (frozen or not)."""
    yield from _own_redis_server()


@pytest.fixture(scope="module")
def module_redis_server():
    """Like ``redis_server``, shared by the tests of one module."""
    yield from _own_redis_server()


@pytest.fixture
def redis_boards(redis_server, settings, monkeypatch):
    """Kiosk boards and the channel layer of this process in the test's redis-server, configured
    as production configures them with REDIS_URL; the server is thawed before the layer closes."""
    from channels.layers import channel_layers

    from live import boards

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": redis_server.url, "socket_timeout": None}]},
        }
    }
    channel_layers.backends.clear()
    monkeypatch.setattr(boards, "_store", boards.RedisBoardStore(redis_server.url))
    yield redis_server
    redis_server.thaw()
    channel_layers.backends.clear()


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory) -> Path:
    """A folder shared by every test process of this run (xdist workers get their own temporary
    folders inside one run folder): for things made once per run, with ``made_once``."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def _prepared_server_base(shared_tmp):
    """A migrated database with one trained model, made once per run; tests get their own copy."""

    def prepare(base: Path) -> None:
        env = ServerEnv(base)
        env.manage("migrate", "-v0")
        env.manage("train", "--quick")

    return made_once(shared_tmp, "server-template", prepare)


@pytest.fixture(scope="session")
def collected_static(shared_tmp):
    """What `manage.py collectstatic` makes with the production settings (``collect_static``),
    collected once per run. Read-only: give it to production-like servers as DJANGO_STATIC_ROOT."""
    return made_once(shared_tmp, "static", collect_static)


@pytest.fixture
def server_env(_prepared_server_base, tmp_path):
    """Environment for daphne processes started by a test: own SQLite copy and model folder."""
    return ServerEnv.copied_from(_prepared_server_base, tmp_path / "server")


@pytest.fixture(scope="module")
def module_server_env(_prepared_server_base, tmp_path_factory):
    """Like ``server_env``, shared by the tests of one module (for a module-scoped daphne)."""
    return ServerEnv.copied_from(_prepared_server_base, tmp_path_factory.mktemp("module") / "server")


@pytest.fixture
def redis_env(server_env, redis_server):
    """The environment for daphne processes sharing the test's redis-server (REDIS_URL)."""
    server_env.redis_url = redis_server.url
    return server_env


@pytest.fixture(scope="module")
def module_redis_env(module_server_env, module_redis_server):
    """``module_server_env`` for daphne processes sharing the module's redis-server."""
    module_server_env.redis_url = module_redis_server.url
    return module_server_env


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium, launched by Playwright (tests/browser.py): one per test module;
    tests open their own pages or contexts in it. Not one per session: while Playwright's sync API
    is open, its event loop counts as running in this thread, which breaks every later async test
    and Django's async-safety check."""
    from tests.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium

    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def new_page(browser):
    """``new_page(**options)``: a page of the module's Chromium with the suite's timeout; options
    go to Playwright's ``new_page`` (``bypass_csp=True`` unless given: see tests/browser.py).
    Every page opened here is closed after the test, whatever it asserted."""
    from tests.browser import TIMEOUT_MS

    opened = []

    def open_page(**options):
        page = browser.new_page(**{"bypass_csp": True, **options})
        opened.append(page)
        page.set_default_timeout(TIMEOUT_MS)
        return page

    yield open_page
    for page in opened:
        if not page.is_closed():
            page.close()
