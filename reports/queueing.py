"""Queueing-theory predictions for a cell, from the configured service-time model.

- M/M/c: Erlang C (exact for Poisson arrivals and exponential service).
- M/D/c: Cosmetatos' correction of the M/M/c wait (Cosmetatos 1976; exact for c = 1, within a few % for
  c > 1 at moderate to high load).
- M/G/c: Allen–Cunneen, Wq ≈ Wq(M/M/c) · (Ca² + Cs²) / 2 with Ca² = 1 (Poisson). This is the model used for
  predictions: the run folder's service-time model gives Cs² (the squared coefficient of variation of
  service time), so lognormal, uniform or constant latency are all covered by one formula.
- Closed loop with zero think time: every user is always in the system, so min(U, c) servers are busy and
  throughput = min(U, c) / S, mean response = U / throughput (Little's law) — exact, any distribution.

The service time is the mean configured upstream time (embed + chat), as the harness wrote it into the run
folder (reports/run_data.py reads it); client, broker and worker overheads are not modelled, so a
measurement slightly below a prediction is expected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceModel:
    """Service time of one request: mean (seconds) and squared coefficient of variation."""

    mean_s: float
    cv2: float
    source: str

    @property
    def rate(self) -> float:
        """μ: requests per second one server completes."""
        return 1.0 / self.mean_s


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits, for `offered` = λ/μ erlangs on `servers` servers (needs ρ < 1).

    Computed through the Erlang B recursion, which stays stable for hundreds of servers.
    """
    if servers < 1:
        raise ValueError("servers must be >= 1")
    rho = offered / servers
    if not 0 <= rho < 1:
        raise ValueError(f"unstable: utilisation {rho:.3f} >= 1")
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = offered * blocking / (k + offered * blocking)
    return blocking / (1 - rho * (1 - blocking))


def mmc_mean_wait(arrival_rate: float, service_rate: float, servers: int) -> float:
    """Mean time in queue (seconds) of M/M/c."""
    wait_probability = erlang_c(servers, arrival_rate / service_rate)
    return wait_probability / (servers * service_rate - arrival_rate)


def mmc_wait_quantile(arrival_rate: float, service_rate: float, servers: int, q: float) -> float:
    """q-quantile of the M/M/c queue wait: P(Wq > t) = C · exp(-(cμ - λ) t)."""
    wait_probability = erlang_c(servers, arrival_rate / service_rate)
    if wait_probability <= 1 - q:
        return 0.0
    return math.log(wait_probability / (1 - q)) / (servers * service_rate - arrival_rate)


def mdc_mean_wait(arrival_rate: float, service_rate: float, servers: int) -> float:
    """Mean time in queue of M/D/c, Cosmetatos' approximation (exact M/D/1 for one server)."""
    rho = arrival_rate / (servers * service_rate)
    base = 0.5 * mmc_mean_wait(arrival_rate, service_rate, servers)
    correction = (1 - rho) * (servers - 1) * (math.sqrt(4 + 5 * servers) - 2) / (16 * rho * servers)
    return base * (1 + correction)


def mgc_mean_wait(arrival_rate: float, service_rate: float, servers: int, service_cv2: float) -> float:
    """Mean time in queue of M/G/c, Allen–Cunneen with Poisson arrivals."""
    return mmc_mean_wait(arrival_rate, service_rate, servers) * (1 + service_cv2) / 2


@dataclass(frozen=True)
class Prediction:
    throughput_rps: float
    mean_latency_s: float | None  # None: unstable (offered load at or above capacity), the queue grows
    model: str


def predict_open(rate: float, servers: int, service: ServiceModel) -> Prediction:
    """Poisson arrivals at `rate` on `servers` servers: throughput and mean response (wait + service)."""
    capacity = servers * service.rate
    if rate <= 0:
        return Prediction(0.0, service.mean_s, "M/G/c")
    if rate >= capacity:
        return Prediction(capacity, None, "M/G/c")
    wait = mgc_mean_wait(rate, service.rate, servers, service.cv2)
    return Prediction(rate, wait + service.mean_s, "M/G/c")


def predict_closed(users: int, servers: int, service: ServiceModel) -> Prediction:
    """`users` clients with no think time on `servers` servers (exact by Little's law)."""
    if users <= 0:
        return Prediction(0.0, None, "closed")
    throughput = min(users, servers) / service.mean_s
    return Prediction(throughput, users / throughput, "closed")
