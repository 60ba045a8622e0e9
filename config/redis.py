"""One Redis connection pool per process, for leases, markers and counters."""

from functools import cache

import redis
from django.conf import settings


@cache
def get_redis() -> redis.Redis:
    """The process-wide Redis client (thread-safe; pooled connections)."""
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
    )
