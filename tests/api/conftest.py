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
