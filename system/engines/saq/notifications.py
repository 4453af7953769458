"""Job updates pushed by Valkey (pub/sub), for the API's long-polls on the SAQ engine: no polling loop.

SAQ publishes every change of a job (started, heartbeat, retried, ended) on a channel named after the job,
and its `PubSubMultiplexer` shares one pattern subscription per queue among all the waiters of a process.
We use SAQ's `Multiplexer` (its extension point) with a loop of our own, for two reasons:
- **No lost wake-up.** SAQ's `Job.refresh(until_complete=…)` reads the job, then subscribes, and SAQ stops
  its subscription whenever the last waiter leaves: a job that ends between the read and the (re)start of
  the subscription wakes nobody, and its client waits the whole `wait`. Here the subscription is started
  once, confirmed by a message of our own before it counts as ready, and kept while the API runs; a waiter
  subscribes BEFORE it reads the job, so any end after the read reaches it.
- **No busy loop while the broker is down**: SAQ's loop retries at once after an error (it would spin a core
  and flood the log while Valkey restarts); ours waits RECONNECT_DELAY_S. redis-py re-subscribes when it
  reconnects; a job that ended during the outage wakes nobody, and its client's wait runs out (it asks
  again and gets the end).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from saq.multiplexer import Multiplexer

log = logging.getLogger(__name__)

RECONNECT_DELAY_S = 0.5
IDLE_READ_S = 1.0
READY_TIMEOUT_S = 5.0


class JobNotifications(Multiplexer):
    """`subscribe(channel)` → an asyncio.Queue of SAQ's messages ({"channel", "data": status}) for it."""

    def __init__(self, redis: AsyncRedis, prefix: str) -> None:
        super().__init__()
        self.redis = redis
        self.prefix = prefix  # SAQ's job ids of one queue: "saq:job:<queue>:"
        self._pubsub = redis.pubsub()
        self._probe = f"{prefix}ragload-probe-{uuid.uuid4()}"
        self._ready = asyncio.Event()

    async def _start(self) -> None:
        await self._pubsub.psubscribe(f"{self.prefix}*")
        while True:
            try:
                # A read timeout of its own: idle, it returns None each second (the connection's socket
                # timeout would raise instead).
                message = await self._pubsub.get_message(timeout=IDLE_READ_S)
            except asyncio.CancelledError:
                return
            except RedisError as exc:
                log.warning("job notifications: %s; again in %.1f s", exc, RECONNECT_DELAY_S)
                await asyncio.sleep(RECONNECT_DELAY_S)
                continue
            if message and message["type"] == "pmessage":
                channel = message["channel"].decode()
                if channel == self._probe:
                    self._ready.set()
                    continue
                self.publish(channel, message)

    def publish(self, channel: str, message: Any) -> None:
        # SAQ's reads a defaultdict: every job's channel would stay in it for good (the subscription is ours
        # for the API's lifetime, not cleared when the last waiter leaves).
        for queue in self._subscriptions.get(channel, ()):
            queue.put_nowait(message)

    async def _close(self) -> None:
        await self._pubsub.aclose()

    async def ready(self) -> None:
        """Start the subscription and return once it demonstrably receives (a probe message came back)."""
        if self._ready.is_set():
            return
        await self.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_S
        while not self._ready.is_set():
            await self.redis.publish(self._probe, "probe")
            try:
                await asyncio.wait_for(self._ready.wait(), timeout=0.05)
            except TimeoutError:
                if loop.time() > deadline:
                    raise RedisError("the job notifications' subscription did not start") from None

    async def release(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Unsubscribe one waiter; unlike SAQ's `unsubscribe`, the subscription stays up for the next."""
        for channel in self._queues.pop(queue, set()):
            self._subscriptions[channel].discard(queue)
            if not self._subscriptions[channel]:
                del self._subscriptions[channel]
