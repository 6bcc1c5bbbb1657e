"""The prediction path has no thread hop: the V2 views are coroutines and every middleware can run
on the event loop (a single sync-only one would send every request through a thread). Static
files still come from WhiteNoise, through a real daphne."""

import asyncio

import pytest
import requests
from django.conf import settings
from django.utils.module_loading import import_string

from api import v2
from tests.servers import daphne_servers


def test_every_middleware_is_async_capable():
    for path in settings.MIDDLEWARE:
        assert getattr(import_string(path), "async_capable", True), path


def test_v2_views_are_coroutines():
    for view in (v2.model_infer, v2.model_metadata, v2.server_ready, v2.model_ready, v2.server_live):
        assert asyncio.iscoroutinefunction(view), view.__name__


@pytest.fixture(scope="module")
def server(module_server_env):
    """One daphne for the two tests below, which only read from it."""
    with daphne_servers(module_server_env, 1) as (server,):
        yield server


def test_static_files_and_pages_are_served_by_daphne(server):
    css = requests.get(f"{server.http}/static/css/site.css", timeout=30)
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")
    assert len(css.content) > 100
    assert requests.get(f"{server.http}/static/css/nothing-here.css", timeout=30).status_code == 404
    ready = requests.get(f"{server.http}/v2/health/ready", timeout=30)
    assert ready.json() == {"ready": True}
    assert requests.get(f"{server.http}/", timeout=30).status_code == 200


def test_bodies_are_parsed_by_the_application_only(server):
    """Daphne's Twisted request would parse form and multipart bodies itself (and answer a malformed
    multipart body with a bare 400); the application parses them, in its own error shape."""
    broken = requests.post(
        f"{server.http}/api/v1/predict",
        data=b"not a multipart body",
        headers={"Content-Type": "multipart/form-data"},  # no boundary: Twisted refused it
        timeout=30,
    )
    assert broken.status_code == 400
    assert "application/json" in broken.headers["Content-Type"]
    assert "application/json" in broken.json()["errors"]["non_field_errors"][0]
