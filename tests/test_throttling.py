"""Throttles against a real redis-server (project/throttling.py): one client's own concurrency never
opens them, and a Redis that is really down makes each process count by itself, never let all
through."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from project import throttling

pytestmark = pytest.mark.redis


@pytest.fixture
def throttle(redis_server, settings):
    settings.REDIS_URL = redis_server.url
    throttling.reset()
    yield throttling.Throttle("test", lambda: "50/minute")
    throttling.reset()


async def test_concurrent_checks_from_one_address_never_pass_the_limit(throttle):
    # Three times the pool's connections at once: the extra calls wait for a connection instead
    # of failing with MaxConnectionsError (which used to count as an outage and let them through).
    decisions = await asyncio.gather(*(throttle.ahit("203.0.113.9") for _ in range(3 * throttling.POOL_SIZE)))
    assert sum(d.allowed for d in decisions) == 50
    assert all(d.wait > 0 for d in decisions if not d.allowed)
    assert (await throttle.ahit("203.0.113.10")).allowed  # another address has its own count


def test_concurrent_sync_checks_never_pass_the_limit(throttle):
    with ThreadPoolExecutor(max_workers=3 * throttling.POOL_SIZE) as pool:
        decisions = list(pool.map(lambda _: throttle.hit("203.0.113.9"), range(200)))
    assert sum(d.allowed for d in decisions) == 50


async def test_with_redis_down_each_process_counts_by_itself(throttle, redis_server, caplog):
    redis_server.kill()
    with caplog.at_level(logging.WARNING, logger="project.throttling"):
        decisions = [await throttle.ahit("203.0.113.9") for _ in range(60)]
    assert sum(d.allowed for d in decisions) == 50  # the limit holds in this process
    assert "cannot reach Redis" in caplog.text
    redis_server.start()
