"""The admin is for staff, and its login locks an address out after repeated failures (django-axes;
README: "Access and roles")."""

import pytest
from django.test import Client

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("nurse", password="a long staff password", is_staff=True)


def attempt(client, password, address="192.0.2.10"):
    return client.post(LOGIN, {"username": "nurse", "password": password}, REMOTE_ADDR=address)


@pytest.mark.django_db
def test_the_admin_login_locks_out_after_repeated_failures(staff, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(client, "wrong").status_code == 200  # the form again, with an error
    assert attempt(client, "wrong").status_code == 429
    # Locked out: even the right password is refused from this address...
    assert attempt(client, "a long staff password").status_code == 429
    # ...while another address can still log in.
    assert attempt(Client(), "a long staff password", address="192.0.2.99").status_code == 302


@pytest.mark.django_db
def test_a_success_before_the_limit_resets_the_count(staff, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        attempt(client, "wrong")
    assert attempt(client, "a long staff password").status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(client, "wrong").status_code == 200


@pytest.mark.django_db
def test_the_admin_is_for_staff_only(django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_user("visitor", password="a long visitor password"))
    assert client.get("/admin/").status_code == 302  # sent to the login page
    assert client.get("/admin/ml_engine/modelversion/").status_code == 302
