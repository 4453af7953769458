"""ProbeUser: one light GET /healthz every RAGLOAD_PROBE_INTERVAL_S, beside the chat users.

It shows whether the API stays responsive under load (the `blocking` baseline does not: its event loop is
stuck in the pipeline, and /healthz waits behind it). Always exactly one probe user (`fixed_count`).
"""

from __future__ import annotations

import time

import locust  # isort: split  (first: it monkey-patches the process with gevent)
from locust.contrib.fasthttp import FastHttpUser

from loadtests.locust.user_support import install_listeners, outcome_of, sample_log, settings
from loadtests.sweep.samples import Sample

CONFIG = settings()
install_listeners(locust.events)


class ProbeUser(FastHttpUser):
    host = CONFIG.api_url
    fixed_count = 1
    network_timeout = CONFIG.deadline_s
    connection_timeout = CONFIG.deadline_s
    wait_time = locust.constant_pacing(CONFIG.probe_interval_s)

    @locust.task
    def healthz(self) -> None:
        started, perf = time.time(), time.perf_counter()
        with self.client.get("/healthz", name="GET /healthz (probe)", catch_response=True) as resp:
            status = resp.status_code or 0
            latency_ms = (time.perf_counter() - perf) * 1000
            outcome = outcome_of(status, latency_ms, CONFIG.deadline_s)
            if outcome == "ok":
                resp.success()
            else:
                resp.failure(f"{outcome} (HTTP {status}) {getattr(resp, 'error', '') or ''}".strip())
        sample_log().write(
            Sample(
                t=started,
                architecture=CONFIG.architecture,
                mode=CONFIG.probe_mode,
                kind="probe",
                latency_ms=CONFIG.deadline_s * 1000 if outcome == "timeout" else latency_ms,
                outcome=outcome,
                status=status,
            )
        )
