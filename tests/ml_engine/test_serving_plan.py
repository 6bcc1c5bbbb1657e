"""Shadow and canary in one process (README: "Model registry"): who answers, what is stored, what
is never shown, and how `activate` and the commands end or refuse them. Across processes:
tests/ml_engine/test_hot_swap.py."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from prometheus_client import REGISTRY, generate_latest
from sklearn.base import clone

from live.routing import websocket_urlpatterns
from ml_engine import metrics, services
from ml_engine.inference import additive_terms, feature_groups
from ml_engine.models import Assessment, Interface, ModelArtifact, ModelVersion, ServingPlan
from ml_engine.registry import active_model, load_version, serialise, store_version
from ml_engine.schema import FEATURE_KEYS
from ml_engine.training import load_dataset
from tests.api.conftest import no_throttling  # noqa: F401 -- autouse: these tests post to the APIs
from tests.samples import PERSON

pytestmark = pytest.mark.django_db
VARIANT = "20990101-000000-varian"
SESSIONS = 10_000


def store_variant(version: str = VARIANT) -> ModelVersion:
    """A second, really different version: the active pipeline refitted on every other row, with
    the metadata that version needs to load and verify (its own baseline and self-check)."""
    base = ModelVersion.objects.get(is_active=True)
    data = load_dataset()
    pipeline = clone(load_version(base).model.pipeline).fit(data.X[::2], data.y[::2])
    term_means = additive_terms(pipeline, feature_groups(pipeline), data.X).mean(axis=0)
    content, digest = serialise(pipeline)
    metadata = copy.deepcopy(base.metadata)
    intercept = float(pipeline[-1].intercept_[0])
    metadata["baseline"] = {
        "intercept": intercept,
        "term_means": term_means.tolist(),
        "logit": intercept + float(term_means.sum()),
    }
    rows = np.array(metadata["self_check"]["rows"], dtype=float)
    metadata["self_check"]["risks"] = pipeline.predict_proba(rows)[:, 1].tolist()
    metadata.update(version=version, artifact_sha256=digest)
    fields = {
        "version": version,
        "created_at": timezone.now(),
        "algorithm": base.algorithm,
        "artifact": f"{version}/model.joblib",
        "artifact_sha256": digest,
        "data_sha256": base.data_sha256,
        "sklearn_version": base.sklearn_version,
        "numpy_version": base.numpy_version,
        "metrics": base.metrics,
        "metadata": metadata,
    }
    return store_version(fields=fields, content=content)


@pytest.fixture
def variant(served_model):
    record = store_variant()
    yield load_version(record)
    active_model.reset()  # the plan rows are rolled back; so is this process's view of them


def shadow_counts(interface: str) -> tuple[int, float]:
    """Rows the shadow scored on ``interface`` so far, and band flips."""
    text = generate_latest(REGISTRY).decode()
    count = flips = 0.0
    for line in text.splitlines():
        if line.startswith(f'diabetes_shadow_risk_difference_count{{interface="{interface}"}}'):
            count = float(line.split()[-1])
        if line.startswith(f'diabetes_shadow_band_flips_total{{interface="{interface}"}}'):
            flips = float(line.split()[-1])
    return int(count), flips


def variant_risk(variant, features: dict) -> float:
    return variant.model.predict_one([features.get(key) for key in FEATURE_KEYS])[0]


def test_canary_share_over_many_sessions_is_close_to_the_asked_share(variant):
    services.model_canary(version=variant.version, share=0.1)
    drawn = [services.live_session_assign() for _ in range(SESSIONS)]
    on_canary = drawn.count(variant.version)
    assert set(drawn) == {None, variant.version}
    # A binomial count: 5 standard deviations (150 of 10,000) is missed once in ~1.7 million runs.
    sigma = math.sqrt(SESSIONS * 0.1 * 0.9)
    assert abs(on_canary - SESSIONS * 0.1) < 5 * sigma, on_canary
    services.model_canary(version=variant.version, share=0.0)
    assert {services.live_session_assign() for _ in range(1000)} == {None}
    services.model_canary(version=variant.version, share=1.0)
    assert {services.live_session_assign() for _ in range(1000)} == {variant.version}


def test_rest_and_v2_requests_are_answered_by_the_canary_with_its_version(client, variant, served_model):
    services.model_canary(version=variant.version, share=1.0)
    reply = client.post("/api/v1/predict", {"features": PERSON}, content_type="application/json").json()
    assert reply["model"]["version"] == variant.version
    assert reply["risk"] == pytest.approx(variant_risk(variant, PERSON), abs=1e-12)
    assert Assessment.objects.get(public_id=reply["id"]).model_version == variant.version
    body = {
        "inputs": [
            {
                "name": "features",
                "datatype": "FP64",
                "shape": [1, 8],
                "data": list(PERSON.values()),
            }
        ]
    }
    v2 = client.post("/v2/models/diabetes/infer", json.dumps(body), content_type="application/json").json()
    assert v2["model_version"] == variant.version
    form = client.post("/predict/", PERSON)  # the form is answered by the active version
    assert Assessment.objects.latest("created_at").model_version == served_model.version, form
    services.model_canary(version=None)
    reply = client.post("/api/v1/predict", {"features": PERSON}, content_type="application/json").json()
    assert reply["model"]["version"] == served_model.version


def test_shadow_risks_are_stored_with_form_and_rest_assessments_and_never_shown(client, variant, served_model):
    _, loaded = services.model_shadow(version=variant.version)
    assert loaded.model.fast is not None  # scored on the fast path
    before = shadow_counts("rest")
    expected = variant_risk(variant, PERSON)
    assert expected != pytest.approx(services.predict(features=PERSON, interface=Interface.FORM).risk, abs=1e-6)
    replies = [
        client.post("/predict/", PERSON),
        client.post("/api/v1/predict", {"features": PERSON}, content_type="application/json"),
    ]
    rows = [PERSON, {"glucose": 190, "bmi": 41.0}, {"age": 22}]
    replies.append(client.post("/api/v1/predict", {"instances": rows}, content_type="application/json"))
    stored = list(Assessment.objects.order_by("pk"))
    assert [a.interface for a in stored] == ["form", "rest", "rest", "rest", "rest"]
    for assessment, features in zip(stored, [PERSON, PERSON, *rows], strict=True):
        assert assessment.model_version == served_model.version
        assert assessment.shadow_version == variant.version
        assert assessment.shadow_risk == pytest.approx(variant_risk(variant, features), abs=1e-12)
        assert assessment.shadow_risk != pytest.approx(assessment.risk, abs=1e-6)
    for reply in replies:
        text = reply.content.decode()
        assert reply.status_code == 200
        assert variant.version not in text and "shadow" not in text.lower()
        assert f"{expected:.4f}"[2:] not in text  # not even as a number (risk digits differ)
    assert shadow_counts("rest")[0] == before[0] + 4


def test_v2_and_live_sockets_feed_the_agreement_metrics_only(client, variant):
    services.model_shadow(version=variant.version)
    before_v2, before_ws = shadow_counts("v2"), shadow_counts("ws")
    rows = [
        list(PERSON.values()),
        [1, 85, 66, 29, 94, 26.6, 0.351, 31],
        [8, 183, 64, 23, 150, 23.3, 0.672, 32],
    ]
    body = {
        "inputs": [
            {
                "name": "features",
                "datatype": "FP64",
                "shape": [3, 8],
                "data": [v for row in rows for v in row],
            }
        ]
    }
    reply = client.post("/v2/models/diabetes/infer", json.dumps(body), content_type="application/json")
    assert reply.status_code == 200 and variant.version not in reply.content.decode()
    assert shadow_counts("v2")[0] == before_v2[0] + 3
    assert not Assessment.objects.exists()
    one = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 8], "data": rows[1]}]}
    client.post("/v2/models/diabetes/infer", json.dumps(one), content_type="application/json")
    assert shadow_counts("v2")[0] == before_v2[0] + 4
    assert metrics.SHADOW.BOUNDS[-1] == 1.0  # every difference of two risks has a bucket

    async def socket_round() -> dict:
        ws = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/predict/")
        assert (await ws.connect(timeout=20))[0]
        await ws.send_json_to({"type": "update", "seq": 0, "features": PERSON})
        answer = await ws.receive_json_from(timeout=20)
        await ws.disconnect()
        return answer

    from asgiref.sync import async_to_sync

    answer = async_to_sync(socket_round)()
    assert answer["type"] == "prediction" and variant.version not in json.dumps(answer)
    assert not any("shadow" in key for key in answer)
    assert shadow_counts("ws")[0] == before_ws[0] + 1


def test_batches_are_scored_by_the_shadow_in_one_vectorised_call(variant, served_model, monkeypatch):
    services.model_shadow(version=variant.version)
    calls = []
    original = variant.model.fast.predict_matrix
    monkeypatch.setattr(
        active_model.plan.shadow.model.fast,
        "predict_matrix",
        lambda X, **kw: calls.append(len(X)) or original(X, **kw),
    )
    rows = [PERSON, {"glucose": 90}, {"bmi": 45.0, "age": 60}]
    predictions = services.predict_many(instances=rows, interface=Interface.REST)
    assert calls == [3]
    for row, prediction in zip(rows, predictions, strict=True):
        assert prediction.shadow_risk == pytest.approx(variant_risk(variant, row), abs=1e-12)
    # The same band-flip count as band_for row by row.
    X = np.array(
        [[2, 148, 72, 35, 120, 33.6, 0.627, 50]] * 2 + [[0, 199, 122, 99, 846, 67.1, 2.42, 81]],
        dtype=float,
    )
    risks, _ = served_model.model.predict_matrix(X, contributions=False)
    shadow_risks, _ = variant.model.predict_matrix(X, contributions=False)
    names = services._band_names(shadow_risks, variant.bands)
    assert names.tolist() == [services.band_for(r, variant.bands) for r in shadow_risks.tolist()]
    assert services._band_names(risks, served_model.bands).tolist() == [
        services.band_for(r, served_model.bands) for r in risks.tolist()
    ]


def test_a_shadow_without_a_fast_path_is_not_scored_and_the_command_says_so(variant, monkeypatch, capsys):
    call_command("shadow", variant.version)
    monkeypatch.setattr(active_model.plan.shadow.model, "fast", None)
    before = generate_latest(REGISTRY).decode()
    prediction = services.predict(features=PERSON, interface=Interface.REST)
    assert prediction.shadow_version == "" and prediction.shadow_risk is None
    after = generate_latest(REGISTRY).decode()
    assert before != after and 'diabetes_shadow_skipped_total{interface="rest"}' in after


def test_activate_ends_the_shadow_and_the_canary(variant, served_model, capsys):
    call_command("shadow", variant.version)
    call_command("canary", variant.version, "--share", "0.25")
    assert active_model.plan.shadow.version == variant.version
    assert active_model.plan.canary.version == variant.version and active_model.plan.canary_share == 0.25
    capsys.readouterr()
    call_command("models")
    listing = capsys.readouterr().out
    assert f"Shadow: {variant.version}" in listing and f"Canary: {variant.version} answers 25.0%" in listing
    call_command("activate", variant.version)
    out = capsys.readouterr().out
    assert "It was the canary: it now answers everyone" in out and f"The shadow {variant.version} ended" in out
    plan = services.serving_plan_get()
    assert (plan.shadow_version, plan.canary_version) == (
        "",
        "",
    ) and variant.version in plan.note
    assert active_model.plan.shadow is None and active_model.plan.canary is None
    assert active_model.current.version == variant.version
    history = services.serving_plan_history()
    assert [p.note for p in history] == [
        f"ended by activating {variant.version}",
        f"canary {variant.version} at 0.25",
        f"shadow {variant.version}",
    ]
    assert all(p.changed_by for p in history)
    call_command("activate", served_model.version)  # nothing in force: no new plan row
    assert services.serving_plan_history()[0] == history[0]


@pytest.mark.parametrize(
    ("command", "args", "words"),
    [
        (
            "shadow",
            ["no-such-version"],
            "No model version 'no-such-version'; known versions:",
        ),
        (
            "canary",
            ["no-such-version", "--share", "0.1"],
            "No model version 'no-such-version'",
        ),
        ("canary", ["{variant}"], "--share 0.1"),
        ("canary", ["{variant}", "--share", "1.5"], "--share must be from 0 to 1"),
        ("canary", ["{variant}", "--share", "ten"], "--share must be a number"),
        ("canary", ["{variant}", "--off"], "not both"),
        ("shadow", ["{variant}", "--off"], "not both"),
        ("shadow", ["{active}"], "is the active version"),
        ("canary", ["{active}", "--share", "0.1"], "is the active version"),
        ("activate", ["no-such-version"], "No model version 'no-such-version'"),
    ],
)
def test_bad_names_and_shares_are_clear_command_errors(variant, served_model, command, args, words):
    args = [a.format(variant=variant.version, active=served_model.version) for a in args]
    with pytest.raises(CommandError, match=words.replace(".", r"\.")):
        call_command(command, *args)
    assert not ServingPlan.objects.exists()


def test_a_version_that_fails_to_load_never_serves_and_says_why(client, variant, capsys, settings):
    ModelArtifact.objects.filter(model_version__version=variant.version).update(content=b"corrupted")
    with pytest.raises(CommandError, match="sha256"):
        call_command("shadow", variant.version)
    # Written behind the commands' back, as a bad restore might.
    ServingPlan.objects.create(
        changed_at=timezone.now(),
        changed_by="test",
        shadow_version=variant.version,
        canary_version=variant.version,
        canary_share=1.0,
    )
    active_model.refresh()
    plan = active_model.plan
    assert plan.shadow is None and plan.canary is None and plan.canary_share == 0.0
    assert len(plan.errors) == 2 and all("sha256" in error for error in plan.errors)
    assert services.live_session_assign() is None
    prediction = services.predict(features=PERSON, interface=Interface.REST)
    assert prediction.model_version != variant.version and prediction.shadow_risk is None
    call_command("models")
    assert "The shadow version does not load, so it does not serve" in capsys.readouterr().out
    settings.METRICS_TOKEN = "operator-token"
    ready = client.get("/readyz", headers={"Authorization": "Bearer operator-token"}).json()
    assert ready["serving_plan"]["shadow"] is None and "sha256" in ready["serving_plan"]["errors"][0]


def test_purge_takes_the_shadow_risks_with_the_assessments(client, variant):
    services.model_shadow(version=variant.version)
    client.post("/api/v1/predict", {"features": PERSON}, content_type="application/json")
    assert Assessment.objects.exclude(shadow_risk=None).count() == 1
    call_command("purge_assessments", "--days", "0", "--yes")
    assert not Assessment.objects.exists()
    # The plan's history names versions, people who changed them and when: no health data.
    fields = {f.name for f in ServingPlan._meta.get_fields()}
    assert fields == {
        "id",
        "changed_at",
        "changed_by",
        "shadow_version",
        "canary_version",
        "canary_share",
        "note",
    }


def test_a_kiosk_shows_the_answer_never_the_shadow(variant, monkeypatch, settings):
    from asgiref.sync import async_to_sync
    from channels.layers import channel_layers

    from live import boards

    settings.BOARD_DELAY_S = 0

    services.model_shadow(version=variant.version)
    monkeypatch.setattr(boards, "_store", None)
    channel_layers.backends.clear()

    async def kiosk_and_person() -> tuple[dict, dict]:
        application = URLRouter(websocket_urlpatterns)
        kiosk = WebsocketCommunicator(application, "/ws/kiosk/lobby-1/")
        assert (await kiosk.connect(timeout=20))[0]
        assert (await kiosk.receive_json_from(timeout=20))["sessions"] == []
        person = WebsocketCommunicator(application, "/ws/predict/")
        assert (await person.connect(timeout=20))[0]
        await person.send_json_to({"type": "share", "board": "lobby-1"})
        assert (await person.receive_json_from(timeout=20))["type"] == "shared"
        await person.send_json_to({"type": "update", "seq": 1, "features": PERSON})
        reply = await person.receive_json_from(timeout=20)
        frame = await kiosk.receive_json_from(timeout=20)
        await person.disconnect()
        await kiosk.disconnect()
        return reply, frame

    reply, frame = async_to_sync(kiosk_and_person)()
    assert frame["type"] == "session" and frame["risk"] == reply["risk"]
    assert frame["risk"] != pytest.approx(variant_risk(variant, PERSON), abs=1e-6)
    assert variant.version not in json.dumps(frame) and not any("shadow" in key for key in frame)


def test_a_live_session_keeps_its_percent_in_the_bands_of_the_version_that_answers_it(variant, served_model):
    services.model_canary(version=variant.version, share=1.0)
    assert services.live_bands(canary=variant.version) is active_model.plan.canary.bands
    assert services.live_bands(canary=None) is served_model.bands
    services.model_canary(version=variant.version, share=0.0)
    assert services.live_bands(canary="20000101-000000-gone00") is active_model.get().bands  # no longer the canary
