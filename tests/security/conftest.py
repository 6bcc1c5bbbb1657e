"""Fixtures for attacks on running servers: real daphne processes sharing one real redis-server."""

from __future__ import annotations

import pytest

from tests.servers import daphne_servers


@pytest.fixture
def redis_env(server_env, redis_server):
    """The environment for daphne processes sharing the test's redis-server."""
    server_env.redis_url = redis_server.url
    return server_env


@pytest.fixture
def daphne_with_redis(redis_env):
    with daphne_servers(redis_env) as [server]:
        yield server
