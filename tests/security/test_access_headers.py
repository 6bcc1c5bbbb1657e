"""Headers that protect people's data (README: "Access and roles"): a Content-Security-Policy
without inline scripts on every page, and ``Cache-Control: no-store`` wherever health data is."""

import json

import pytest

from tests.samples import PERSON, PERSON_ROW

V2_BODY = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 8], "data": PERSON_ROW}]}


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


@pytest.mark.parametrize("url", ["/", "/model/", "/kiosk/", "/api/docs/", "/admin/login/", "/api/v1/model", "/healthz"])
def test_every_page_has_a_strict_content_security_policy(client, served_model, url):
    response = client.get(url)
    assert response.status_code == 200
    directives = policy(response)
    assert directives["script-src"] == ["'self'"] and directives["style-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"] and directives["frame-ancestors"] == ["'none'"]
    assert not any("unsafe" in value for values in directives.values() for value in values)


@pytest.mark.parametrize("url", ["/", "/model/", "/kiosk/"])
def test_pages_have_no_inline_script_or_style(client, served_model, url):
    html = client.get(url).content.decode()
    assert "<script>" not in html and "<style" not in html and " style=" not in html and " on" + "click=" not in html
    assert all('src="' in tag for tag in html.split("<script")[1:])


def test_the_result_page_has_no_inline_style_and_is_not_stored(client, served_model):
    response = client.post("/predict/", {k: "" if v is None else v for k, v in PERSON.items()})
    assert response.status_code == 200
    assert " style=" not in response.content.decode() and "<script>" not in response.content.decode()
    assert "no-store" in response["Cache-Control"]


def test_swagger_ui_loads_its_init_script_from_a_file(client, served_model):
    html = client.get("/api/docs/").content.decode()
    inline = [tag for tag in html.split("<script")[1:] if 'src="' not in tag.split(">")[0]]
    assert not inline, inline
    assert client.get("/api/docs/?script=").status_code == 200


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("get", "/", None),
        ("post", "/api/v1/predict", {"features": PERSON}),
        ("post", "/api/v1/predict", {"features": {"glucose": 900}}),
        ("post", "/v2/models/diabetes/infer", V2_BODY),
    ],
)
def test_health_data_is_never_cached(client, served_model, method, url, body):
    kwargs = {} if body is None else {"data": json.dumps(body), "content_type": "application/json"}
    response = getattr(client, method)(url, **kwargs)
    assert "no-store" in response["Cache-Control"], (url, response.status_code)


def test_outcome_responses_are_not_stored(client, served_model, outcomes_key):
    ident = client.post("/api/v1/predict", data=json.dumps({"features": PERSON}), content_type="application/json")
    url = f"/api/v1/assessments/{ident.json()['id']}/outcome"
    for headers in ({}, outcomes_key):
        response = client.post(url, data=json.dumps({"outcome": 1}), content_type="application/json", **headers)
        assert "no-store" in response["Cache-Control"]
