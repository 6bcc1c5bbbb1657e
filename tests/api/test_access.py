"""Who may record outcomes (README: "Access and roles"): anonymous clients are refused, a key with
the outcomes scope records once, staff sessions record (with CSRF) and change outcomes, and every
recording leaves an audit row. Ids are random UUIDs; database keys find nothing."""

import io
import uuid

import pytest
from django.core.management import call_command
from django.test import Client

from api.models import ApiKey
from ml_engine.models import Assessment, OutcomeChange
from tests.samples import PERSON

PREDICT = "/api/v1/predict"
# The admin change form's (read-only) audit inline still posts its management form.
INLINE_MANAGEMENT = {f"outcome_changes-{k}": "0" for k in ("TOTAL_FORMS", "INITIAL_FORMS")}


def outcome_url(assessment_id):
    return f"/api/v1/assessments/{assessment_id}/outcome"


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("nurse", password="a long staff password", is_staff=True)


def test_predict_returns_a_uuid_and_never_the_database_key(client, served_model, post_json):
    body = post_json(client, PREDICT, {"features": PERSON}).json()
    stored = Assessment.objects.get(public_id=body["id"])
    assert str(uuid.UUID(body["id"], version=4)) == body["id"]
    batch = post_json(client, PREDICT, {"instances": [PERSON, PERSON]}).json()["predictions"]
    assert all(uuid.UUID(p["id"]).version == 4 for p in batch)
    assert str(stored.pk) not in {body["id"], *(p["id"] for p in batch)}


def test_an_anonymous_outcome_is_refused(client, assessment_id, post_json, assert_errors):
    response = post_json(client, outcome_url(assessment_id), {"outcome": 1})
    assert "API key" in assert_errors(response, 401)["non_field_errors"][0]
    assert response["WWW-Authenticate"] == "Api-Key"
    assert Assessment.objects.get(public_id=assessment_id).outcome is None


@pytest.mark.parametrize("header", ["Api-Key nonsense", "Api-Key abc.def", "Bearer x", "Api-Key "])
def test_a_wrong_key_is_refused(client, assessment_id, header, post_json):
    response = post_json(client, outcome_url(assessment_id), {"outcome": 1}, HTTP_AUTHORIZATION=header)
    assert response.status_code in (401, 403)
    assert Assessment.objects.get(public_id=assessment_id).outcome is None


def test_a_key_without_the_outcomes_scope_is_forbidden(client, assessment_id, post_json, assert_errors):
    _, key = ApiKey.objects.create_key(name="predict only", scopes=["predict"])
    response = post_json(client, outcome_url(assessment_id), {"outcome": 1}, HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert "outcomes scope" in assert_errors(response, 403)["non_field_errors"][0]


def test_a_keyed_outcome_is_recorded_once_and_audited(client, assessment_id, outcomes_key, post_json, assert_errors):
    first = post_json(client, outcome_url(assessment_id), {"outcome": 1}, **outcomes_key)
    assert first.status_code == 200 and first.json()["id"] == assessment_id
    second = post_json(client, outcome_url(assessment_id), {"outcome": 0}, **outcomes_key)
    assert "already recorded" in assert_errors(second, 409)["non_field_errors"][0]
    stored = Assessment.objects.get(public_id=assessment_id)
    assert (stored.outcome, stored.outcome_source) == (1, "api_key")
    assert stored.outcome_recorded_by.startswith("key:test clinic (")
    [change] = OutcomeChange.objects.filter(assessment=stored)
    assert (change.old_outcome, change.new_outcome, change.source) == (None, 1, "api_key")


def test_a_keyed_client_cannot_change_an_outcome(client, assessment_id, outcomes_key, post_json, assert_errors):
    post_json(client, outcome_url(assessment_id), {"outcome": 1}, **outcomes_key)
    response = post_json(client, outcome_url(assessment_id), {"outcome": 0}, method="put", **outcomes_key)
    assert "staff" in assert_errors(response, 403)["non_field_errors"][0]
    assert Assessment.objects.get(public_id=assessment_id).outcome == 1


def test_a_revoked_key_is_refused(client, assessment_id, post_json, assert_errors):
    api_key, key = ApiKey.objects.create_key(name="old", scopes=["outcomes"])
    out = io.StringIO()
    call_command("apikey", "revoke", api_key.prefix, stdout=out)
    assert "Revoked" in out.getvalue()
    response = post_json(client, outcome_url(assessment_id), {"outcome": 1}, HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert "not valid" in assert_errors(response, 401)["non_field_errors"][0]


def test_the_apikey_command_issues_a_hashed_key(client, assessment_id, post_json):
    out = io.StringIO()
    call_command("apikey", "create", "--name", "clinic", "--scope", "outcomes", stdout=out)
    key = out.getvalue().splitlines()[1]
    stored = ApiKey.objects.get(name="clinic")
    assert stored.scopes == ["outcomes"] and key not in stored.hashed_key and key.startswith(stored.prefix + ".")
    response = post_json(client, outcome_url(assessment_id), {"outcome": 0}, HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert response.status_code == 200
    listing = io.StringIO()
    call_command("apikey", "list", stdout=listing)
    assert stored.prefix in listing.getvalue() and key not in listing.getvalue()


def test_a_staff_session_needs_csrf_records_and_changes_with_an_audit_trail(
    assessment_id, staff, post_json, assert_errors
):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff)
    refused = post_json(browser, outcome_url(assessment_id), {"outcome": 1})
    assert "CSRF" in assert_errors(refused, 403)["non_field_errors"][0]
    browser.get("/admin/")  # sets the CSRF cookie like a real page visit
    token = {"HTTP_X_CSRFTOKEN": browser.cookies["csrftoken"].value}
    assert post_json(browser, outcome_url(assessment_id), {"outcome": 1}, **token).status_code == 200
    assert post_json(browser, outcome_url(assessment_id), {"outcome": 0}, **token).status_code == 409
    changed = post_json(browser, outcome_url(assessment_id), {"outcome": 0}, method="put", **token)
    assert changed.status_code == 200 and changed.json()["outcome"] == 0
    history = list(OutcomeChange.objects.order_by("changed_at").values_list("old_outcome", "new_outcome", "changed_by"))
    assert history == [(None, 1, "staff:nurse"), (1, 0, "staff:nurse")]


def test_a_non_staff_session_is_refused(client, assessment_id, django_user_model, post_json):
    user = django_user_model.objects.create_user("visitor", password="a long visitor password")
    client.force_login(user)
    assert post_json(client, outcome_url(assessment_id), {"outcome": 1}).status_code in (401, 403)


def test_guessing_ids_finds_nothing(client, assessment_id, outcomes_key, post_json, assert_errors):
    stored = Assessment.objects.get(public_id=assessment_id)
    for guess in [str(stored.pk), str(stored.pk + 1), str(uuid.uuid4()), str(uuid.uuid4()), "0"]:
        response = post_json(client, outcome_url(guess), {"outcome": 1}, **outcomes_key)
        assert assert_errors(response, 404)["non_field_errors"][0].startswith("No assessment")
    assert Assessment.objects.get(public_id=assessment_id).outcome is None


def test_staff_change_an_outcome_in_the_admin_with_an_audit_row(client, assessment_id, staff, outcomes_key, post_json):
    post_json(client, outcome_url(assessment_id), {"outcome": 1}, **outcomes_key)
    stored = Assessment.objects.get(public_id=assessment_id)
    staff.is_superuser = True
    staff.save()
    admin = Client()
    admin.force_login(staff)
    page = admin.get(f"/admin/ml_engine/assessment/{stored.pk}/change/")
    assert page.status_code == 200
    response = admin.post(f"/admin/ml_engine/assessment/{stored.pk}/change/", {"outcome": "0", **INLINE_MANAGEMENT})
    assert response.status_code == 302, response.content[:2000]
    stored.refresh_from_db()
    assert (stored.outcome, stored.outcome_source, stored.outcome_recorded_by) == (0, "staff", "staff:nurse")
    assert list(OutcomeChange.objects.order_by("changed_at").values_list("old_outcome", "new_outcome")) == [
        (None, 1),
        (1, 0),
    ]


V2_INFER = "/v2/models/diabetes/infer"
V2_BODY = {
    "inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 8], "data": [2, 148, 72, 35, 120, 33.6, 0.6, 50]}]
}


def test_predictions_are_open_by_default(client, served_model, post_json):
    assert post_json(client, PREDICT, {"features": PERSON}).status_code == 200
    assert post_json(client, V2_INFER, V2_BODY).status_code == 200


def test_predictions_can_require_a_predict_key(client, served_model, settings, outcomes_key, post_json, assert_errors):
    settings.API_REQUIRE_KEY_FOR_PREDICT = True
    assert (
        "predict scope" in assert_errors(post_json(client, PREDICT, {"features": PERSON}), 401)["non_field_errors"][0]
    )
    anonymous_v2 = post_json(client, V2_INFER, V2_BODY)
    assert anonymous_v2.status_code == 401 and "predict scope" in anonymous_v2.json()["error"]
    assert assert_errors(post_json(client, PREDICT, {"features": PERSON}, **outcomes_key), 403)["non_field_errors"][0]
    assert post_json(client, V2_INFER, V2_BODY, **outcomes_key).status_code == 403
    _, key = ApiKey.objects.create_key(name="partner", scopes=["predict"])
    keyed = {"HTTP_AUTHORIZATION": f"Api-Key {key}"}
    assert post_json(client, PREDICT, {"features": PERSON}, **keyed).status_code == 200
    assert post_json(client, V2_INFER, V2_BODY, **keyed).status_code == 200
