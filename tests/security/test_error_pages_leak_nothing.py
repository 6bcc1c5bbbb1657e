"""A bug under /api/ or /v2/ is answered in the API's JSON shape in production (never Django's HTML
500), and a DEBUG error page shows no password held in a setting (REDIS_URL, channel layer hosts)."""

import sys

import pytest
from django.test import RequestFactory
from django.urls import path
from django.views.debug import technical_500_response

from project import urls as project_urls


def _broken(request):
    raise RuntimeError("a bug")


urlpatterns = [
    path("api/v1/broken", _broken),
    path("v2/broken", _broken),
    path("broken", _broken),
    *project_urls.urlpatterns,
]
handler500 = project_urls.handler500


@pytest.fixture
def production_client(client, settings):
    settings.DEBUG = False
    settings.ROOT_URLCONF = __name__
    client.raise_request_exception = False
    return client


def test_api_bug_is_a_json_500(production_client):
    response = production_client.get("/api/v1/broken")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert list(response.json()["errors"]) == ["non_field_errors"]


def test_v2_bug_is_a_v2_json_500(production_client):
    response = production_client.get("/v2/broken")
    assert response.status_code == 500
    assert set(response.json()) == {"error"}


def test_page_bug_is_a_plain_page(production_client):
    response = production_client.get("/broken")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
    assert b"Traceback" not in response.content


# Built at run time, so the page's source-code context cannot show them either.
SECRETS = ["-".join(["s3cret", name, "pw"]) for name in ("redis", "host", "db")]


def test_debug_page_masks_passwords_in_settings(settings):
    redis_pw, host_pw, db_pw = SECRETS
    settings.DEBUG = True
    settings.REDIS_URL = f"redis://:{redis_pw}@127.0.0.1:6390/0"
    settings.CHANNEL_LAYERS = {"default": {"CONFIG": {"hosts": [{"address": f"redis://u:{host_pw}@127.0.0.1:6390/0"}]}}}
    settings.DATABASE_URL = f"postgres://app:{db_pw}@127.0.0.1:5432/app"
    del redis_pw, host_pw, db_pw
    request = RequestFactory().get("/api/v1/predict")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        page = technical_500_response(request, *sys.exc_info()).content.decode()
    for secret in SECRETS:
        assert secret not in page
    assert "REDIS_URL" in page
