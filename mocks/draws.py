"""Common random numbers: every random choice for a call is drawn from the seed and the request itself.

A call's key is a hash of what it asks (chat: the messages; embeddings: the inputs), so the same request
gets the same latency and fault draw whichever system sent it and in whatever order calls reach the mock.
The k-th call with the same key since the last reset gets the k-th draw of that key: a workload that asks
the same few questions again and again still sees a spread of latencies, and since equal requests are
interchangeable, the draws a set of requests receives does not depend on their order either.

The content key is CRC-32 and Adler-32 side by side (64 bits, about 2 µs for a RAG-sized prompt, where
BLAKE2b takes 12 µs on this Python): not a cryptographic hash, and it need not be one, as two requests that
collide merely share one sequence of draws. Never Python's `hash()`, which is salted per process. The draw
itself is BLAKE2b of the seed, the key and the occurrence (32 bytes, about 1 µs): one 16-byte digest gives
two independent uniforms (latency, fault), turned into a latency by the spec's inverse CDF
(`LatencySpec.quantile`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from hashlib import blake2b

import orjson

MAX_KEYS = 1 << 20  # distinct requests remembered for their occurrence count; then the count starts over
_TO_UNIT = 2.0**-53


@dataclass(frozen=True, slots=True)
class Draw:
    key: bytes  # 8 bytes: the request's content hash
    occurrence: int  # 0 for the first call with this key since the last reset
    latency_u: float  # uniform in (0, 1)
    fault_u: float  # uniform in (0, 1), independent of latency_u


def request_key(content: object) -> bytes:
    """8-byte key of the request's content (any JSON-serialisable value, e.g. the messages)."""
    data = orjson.dumps(content)
    return zlib.crc32(data).to_bytes(4, "little") + zlib.adler32(data).to_bytes(4, "little")


def _unit(eight_bytes: bytes) -> float:
    return ((int.from_bytes(eight_bytes, "little") >> 11) + 0.5) * _TO_UNIT


class Draws:
    """Per-call draws for one seed; `reset()` starts every key's occurrence count again."""

    def __init__(self, seed: int) -> None:
        self._seed = (seed % (1 << 128)).to_bytes(16, "little")
        self._seen: dict[bytes, int] = {}

    def reset(self) -> None:
        self._seen.clear()

    def draw(self, key: bytes) -> Draw:
        seen = self._seen
        occurrence = seen.get(key, 0)
        if occurrence == 0 and len(seen) >= MAX_KEYS:
            seen.clear()
        seen[key] = occurrence + 1
        digest = blake2b(self._seed + key + occurrence.to_bytes(8, "little"), digest_size=16).digest()
        return Draw(key, occurrence, _unit(digest[:8]), _unit(digest[8:]))
