from __future__ import annotations

import math

import pytest

from reports.queueing import (
    ServiceModel,
    erlang_c,
    mdc_mean_wait,
    mgc_mean_wait,
    mmc_mean_wait,
    mmc_wait_quantile,
    predict_closed,
    predict_open,
)


def erlang_c_closed_form(servers: int, offered: float) -> float:
    """Textbook Erlang C: (a^c/c! · c/(c-a)) / (Σ_{k<c} a^k/k! + a^c/c! · c/(c-a))."""
    top = offered**servers / math.factorial(servers) * servers / (servers - offered)
    return top / (sum(offered**k / math.factorial(k) for k in range(servers)) + top)


def test_mm1_mean_wait_is_rho_over_mu_minus_lambda() -> None:
    arrival, service = 3.0, 5.0
    rho = arrival / service
    assert mmc_mean_wait(arrival, service, 1) == pytest.approx(rho / (service - arrival))


def test_erlang_c_one_server_is_utilisation() -> None:
    assert erlang_c(1, 0.7) == pytest.approx(0.7)


def test_erlang_c_two_servers_one_erlang_is_one_third() -> None:
    # M/M/2 with λ = μ = 1: P(wait) = 1/3 and Wq = C / (cμ - λ) = 1/3 s (Gross & Harris).
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert mmc_mean_wait(1.0, 1.0, 2) == pytest.approx(1 / 3)


@pytest.mark.parametrize(("servers", "offered"), [(10, 8.0), (5, 2.5), (30, 27.0)])
def test_erlang_c_matches_closed_form(servers: int, offered: float) -> None:
    assert erlang_c(servers, offered) == pytest.approx(erlang_c_closed_form(servers, offered), rel=1e-9)


def test_erlang_c_call_centre_case() -> None:
    # 10 agents, 8 erlangs: probability of waiting ≈ 40.9 % (standard call-centre table value)
    assert erlang_c(10, 8.0) == pytest.approx(0.4092, abs=5e-4)


def test_erlang_c_rejects_unstable_load() -> None:
    with pytest.raises(ValueError, match="unstable"):
        erlang_c(2, 2.0)


def test_md1_cosmetatos_is_exact_pollaczek_khinchine() -> None:
    arrival, service = 4.0, 5.0
    rho = arrival / service
    assert mdc_mean_wait(arrival, service, 1) == pytest.approx(rho / (2 * service * (1 - rho)))


def test_mdc_wait_lies_between_half_and_full_mm_c_wait() -> None:
    # Cosmetatos adds a positive correction to half the M/M/c wait, and stays below M/M/c.
    for servers, arrival in [(2, 1.5), (4, 3.5), (8, 6.0)]:
        mm = mmc_mean_wait(arrival, 1.0, servers)
        assert 0.5 * mm < mdc_mean_wait(arrival, 1.0, servers) < mm


def test_allen_cunneen_reduces_to_mmc_for_exponential_service() -> None:
    assert mgc_mean_wait(3.0, 1.0, 4, service_cv2=1.0) == pytest.approx(mmc_mean_wait(3.0, 1.0, 4))


def test_mmc_wait_quantile_inverts_the_tail() -> None:
    arrival, service, servers = 3.0, 1.0, 4
    t99 = mmc_wait_quantile(arrival, service, servers, 0.99)
    tail = erlang_c(servers, arrival / service) * math.exp(-(servers * service - arrival) * t99)
    assert tail == pytest.approx(0.01)
    assert mmc_wait_quantile(0.1, 1.0, 4, 0.5) == 0.0  # almost nobody waits


def test_predictions_closed_and_open() -> None:
    service = ServiceModel(mean_s=0.5, cv2=0.0, source="const:500ms")
    closed = predict_closed(users=12, servers=4, service=service)
    assert closed.throughput_rps == pytest.approx(8.0)  # 4 busy servers / 0.5 s
    assert closed.mean_latency_s == pytest.approx(1.5)  # Little: 12 users / 8 req/s
    assert predict_closed(users=2, servers=4, service=service).mean_latency_s == pytest.approx(0.5)
    stable = predict_open(rate=6.0, servers=4, service=service)
    assert stable.throughput_rps == 6.0
    assert stable.mean_latency_s == pytest.approx(0.5 + mgc_mean_wait(6.0, 2.0, 4, 0.0))
    overloaded = predict_open(rate=10.0, servers=4, service=service)
    assert overloaded.throughput_rps == pytest.approx(8.0) and overloaded.mean_latency_s is None
