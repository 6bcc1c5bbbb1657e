import pytest
from django.core.cache import cache

from project import throttling


@pytest.fixture(autouse=True)
def no_throttling(settings):
    """API tests are never throttled by accident; test_rest proves the throttle on its own."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": None}}
    settings.THROTTLE_V2_ROWS = None
    cache.clear()
    throttling.reset()
    yield
    cache.clear()
    throttling.reset()


@pytest.fixture
def outcomes_key(db):
    """Test-client headers carrying a fresh API key with the outcomes scope."""
    from api.models import ApiKey

    _, key = ApiKey.objects.create_key(name="test clinic", scopes=["outcomes"])
    return {"HTTP_AUTHORIZATION": f"Api-Key {key}"}
