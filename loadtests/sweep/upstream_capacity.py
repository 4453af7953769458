"""The capacity curve of a cell's upstream: what the cell's ideal throughput is when the upstream has a knee.

Under the mock's `batch` capacity model (mocks/capacity.py) a call's time grows with the calls in flight, so
W / S (S: one request's upstream time alone) is no limit a pool of W workers can reach past a few calls. The
harness computes, once per upstream, the model's closed-loop curve for RAG requests — c clients, each
sending an embeddings call then a chat call, the next request the moment the previous one ends — with
`mocks.capacity.closed_loop`, the same scheduler the live mock runs. The report gets the curve as numbers in
config.json (`upstreams`) and each cell's bound in summary.csv; it imports nothing of the mock.

The embeddings call and the chat call's own draw (`chat_latency`: time before the engine) are spent outside
the engine, so they enter the model as one constant overhead per request: their means. The token counts are
what this project's requests send (`[mock] prompt_tokens`/`output_tokens`; the call log shows the real ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from mocks.capacity import closed_loop, unloaded_latency
from mocks.config import MockConfig

CURVE_MAX_CONCURRENCY = 48  # far enough past any knee a 2-core machine reaches; the report plots up to here


@dataclass(frozen=True)
class CurvePoint:
    concurrency: int
    ttft_s: float  # mean, from the chat call's send to its first token (its own draw included)
    latency_s: float  # mean chat call, from its send to its last token
    rps: float  # RAG requests per second (embeddings call + chat call) at this many requests in flight


@dataclass(frozen=True)
class UpstreamCurve:
    """A capacity upstream's curve; `rps(c)` is the most c requests in flight can get from it."""

    name: str
    points: tuple[CurvePoint, ...]
    unloaded_s: float  # one RAG request alone: embeddings + chat (S under this upstream)
    prompt_tokens: int
    output_tokens: int

    @property
    def knee(self) -> CurvePoint:
        """Where throughput peaks: more calls in flight only make every call slower."""
        return max(self.points, key=lambda p: p.rps)

    def rps(self, concurrency: int | None) -> float:
        """Throughput with at most `concurrency` requests in flight (None: unbounded, the knee's — the best
        this upstream gives any design)."""
        if concurrency is None:
            return self.knee.rps
        last = self.points[-1]
        if concurrency <= last.concurrency:
            return self.points[max(1, concurrency) - 1].rps
        return last.rps * last.concurrency / concurrency  # past the curve: the tail keeps falling

    def as_dict(self) -> dict[str, Any]:
        knee = self.knee
        return {
            "model": "batch",
            "unloaded_ms": round(self.unloaded_s * 1000, 3),
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "knee": {"concurrency": knee.concurrency, "rps": round(knee.rps, 3)},
            "curve": [
                {
                    "concurrency": p.concurrency,
                    "ttft_ms": round(p.ttft_s * 1000, 3),
                    "latency_ms": round(p.latency_s * 1000, 3),
                    "rps": round(p.rps, 3),
                }
                for p in self.points
            ],
        }


@cache
def capacity_curve(
    name: str, config_items: tuple[tuple[str, Any], ...], embed_mean_s: float, prompt: int, output: int
) -> UpstreamCurve | None:
    """The curve of an upstream given as mock config keys; None when it has no capacity model."""
    config = MockConfig().updated(dict(config_items))
    if config.capacity != "batch":
        return None
    model = config.batch_model()
    chat_before = config.chat_latency.mean
    engine_alone = unloaded_latency(model, prompt, output)
    points = []
    for c in range(1, CURVE_MAX_CONCURRENCY + 1):
        point = closed_loop(model, c, prompt, output, chat_before + embed_mean_s)
        points.append(
            CurvePoint(
                concurrency=c,
                ttft_s=point.ttft_s - embed_mean_s,
                latency_s=point.latency_s - embed_mean_s,
                rps=point.calls_per_s,
            )
        )
    return UpstreamCurve(name, tuple(points), embed_mean_s + chat_before + engine_alone, prompt, output)
