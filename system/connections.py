"""Valkey/Redis clients of the queued system, with timeouts (redis-py has none by default: without them a
dead broker hangs requests instead of a 503), for either engine."""

from __future__ import annotations

import redis.asyncio
from redis import Redis

from system.settings import SystemSettings

COMMAND_POOL_SIZE = 512  # short commands; redis-py's default of 100 ran out under bursts of submits


def sync_connection(settings: SystemSettings) -> Redis:
    """A client with timeouts (RQ raises the socket timeout of a worker's client above its BLPOP itself)."""
    return Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_connect_timeout_s,
        socket_timeout=settings.redis_socket_timeout_s,
    )


def async_connection(
    settings: SystemSettings, max_connections: int, socket_timeout_s: float | None = None
) -> redis.asyncio.Redis:
    """An asyncio client; redis-py caps its pool at 100 connections unless told otherwise."""
    return redis.asyncio.Redis.from_url(
        settings.redis_url,
        max_connections=max_connections,
        socket_connect_timeout=settings.redis_connect_timeout_s,
        socket_timeout=socket_timeout_s or settings.redis_socket_timeout_s,
    )
