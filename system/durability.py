"""What a 202 survives: confirming that an accepted job is on the broker's disk (BROKER_DURABILITY=fsync).

After an engine's enqueue, the API writes a marker (INCR) and then sends WAITAOF 1 0, both on one connection
held for the two. WAITAOF waits until that connection's last write is fsynced to the broker's append-only
file; the AOF is one sequence, so the enqueue, which completed before the marker was sent, is on disk too
(WAITAOF alone would check the writes of whichever pooled connection it happens to use). Two round trips,
not one pipeline: Valkey 9 fsyncs at once for a WAITAOF that arrives after its write was flushed (≈ 0.3 ms
here with `appendfsync everysec`), but a WAITAOF pipelined behind its write waits for the next server tick
(≈ 100 ms, measured). The same for every engine: it confirms the writes, whoever made them.
Cost per submit and the guarantee: README ("Durability of an accepted job").
"""

from __future__ import annotations

from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ResponseError

FSYNC_MARKER_KEY = "ragload:fsync-marker"  # the write WAITAOF waits for


class BrokerNotDurable(Exception):
    """The broker did not confirm that an enqueued job is on disk (no AOF, or not within the timeout)."""


async def confirm_on_disk(commands: AsyncRedis, timeout_ms: int) -> None:
    """Return once every write completed before this call is fsynced to the broker's AOF; raises
    BrokerNotDurable if the broker cannot confirm it (no AOF, a Redis before 7.2, or a timeout)."""
    try:
        async with commands.client() as pinned:  # one connection for both commands
            await pinned.incr(FSYNC_MARKER_KEY)
            fsynced_locally, _ = await pinned.execute_command("WAITAOF", 1, 0, timeout_ms)
    except ResponseError as exc:  # "WAITAOF cannot be used when … appendonly is disabled"; Redis < 7.2
        raise BrokerNotDurable(f"the broker cannot confirm that jobs are on disk ({exc})") from exc
    if int(fsynced_locally) < 1:
        raise BrokerNotDurable(f"the broker did not confirm the job on disk within {timeout_ms} ms")
