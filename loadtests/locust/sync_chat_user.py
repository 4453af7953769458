"""SyncChatUser: POST /chat on the synchronous baseline; the answer comes back in the same request.

A request past the deadline (RAGLOAD_DEADLINE_S, the same for both architectures) is a timeout, counted as
such: the socket gives up at the deadline, and a late 2xx or the server's own 504 count as timeouts too.
FastHttpUser (geventhttpclient): ~5× the request rate of HttpUser per generator core (docs/architecture.md,
"Facts").
"""

from __future__ import annotations

import locust  # isort: split  (first: it monkey-patches the process with gevent)
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

from loadtests.locust.user_support import (
    UserSequence,
    fire_e2e,
    install_listeners,
    next_start,
    outcome_of,
    sample_log,
    settings,
)
from loadtests.sweep.samples import Sample

CONFIG = settings()
install_listeners(locust.events)


class SyncChatUser(FastHttpUser):
    host = CONFIG.baseline_url
    network_timeout = CONFIG.deadline_s
    connection_timeout = CONFIG.deadline_s
    wait_time = locust.constant(CONFIG.think_time_s)

    def on_start(self) -> None:
        self.worker_index = getattr(self.environment.runner, "worker_index", 0)
        self.sequence = UserSequence(self.worker_index)

    @locust.task
    def chat(self) -> None:
        start = next_start(self.worker_index, self.sequence)
        if start is None:
            raise StopUser()
        body = {"query": start.query, "top_k": CONFIG.top_k}
        with self.client.post("/chat", json=body, name="POST /chat (sync)", catch_response=True) as resp:
            status = resp.status_code or 0
            latency_ms = start.elapsed_ms()
            outcome = outcome_of(status, latency_ms, CONFIG.deadline_s)
            if outcome == "ok":
                resp.success()
            else:
                resp.failure(f"{outcome} (HTTP {status}) {getattr(resp, 'error', '') or ''}".strip())
        sample = Sample(
            t=start.epoch,
            architecture="sync",
            mode=CONFIG.sync_mode,
            kind="e2e",
            latency_ms=CONFIG.deadline_s * 1000 if outcome == "timeout" else latency_ms,
            outcome=outcome,
            status=status,
            lag_ms=start.lag_ms,
            request=start.request,
        )
        sample_log().write(sample)
        fire_e2e(self.environment, "chat (sync, end to end)", sample)
