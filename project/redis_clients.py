"""Redis clients for the per-address limits and the kiosk boards: one way to make them.

Each client draws from a *blocking* pool of a fixed size: a burst of concurrent calls waits (up to
``wait`` seconds) for a free connection instead of failing with ``MaxConnectionsError``. That
error is a ``RedisError``, so without the wait a client's own concurrency would look like a Redis
outage to the code that falls back when Redis is down (README: "Throttles"). Short socket
timeouts keep a dead or frozen Redis from holding anything up for long.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis
    import redis.asyncio


def blocking_client(url: str, *, size: int, wait: float, timeout: float, **options: float) -> redis.Redis:
    """A synchronous client over a blocking pool of ``size`` connections."""
    import redis

    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=size, timeout=wait, socket_timeout=timeout, socket_connect_timeout=timeout, **options
    )
    return redis.Redis(connection_pool=pool)


def blocking_async_client(url: str, *, size: int, wait: float, timeout: float, **options: float) -> redis.asyncio.Redis:
    """An asyncio client (for one event loop) over a blocking pool of ``size`` connections."""
    import redis.asyncio

    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url, max_connections=size, timeout=wait, socket_timeout=timeout, socket_connect_timeout=timeout, **options
    )
    return redis.asyncio.Redis(connection_pool=pool)
