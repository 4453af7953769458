"""QueuedChatUser: submit (POST /chat → 202 + job id), then wait for the result on GET /job-status.

Two ways to wait, chosen by RAGLOAD_QUEUED_MODE: `longpoll` (`wait=` up to the time left, the server answers
when the job ends) or `poll` (a plain GET every RAGLOAD_POLL_INTERVAL_S, like the seed's client). Besides
the HTTP entries it fires one custom entry per request for the end-to-end latency (submit → result in
hand), and writes one `e2e` sample (with queue wait, run time and poll count) and one `submit` sample.
Past the deadline (the same as the baseline's) the request is a timeout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import gevent
import locust  # isort: split  (first: it monkey-patches the process with gevent)
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

from loadtests.locust.user_support import (
    LONG_POLL_MAX_S,
    NETWORK_MARGIN_S,
    Start,
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
MIN_WAIT_S = 0.01  # less time than this left before the deadline: do not ask again


@dataclass
class Waited:
    outcome: str
    status: int
    polls: int
    timings: dict[str, float]


def _json(resp: Any) -> dict[str, Any]:
    try:
        body = json.loads(resp.content or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class QueuedChatUser(FastHttpUser):
    host = CONFIG.api_url
    network_timeout = CONFIG.deadline_s + NETWORK_MARGIN_S
    connection_timeout = CONFIG.deadline_s
    wait_time = locust.constant(CONFIG.think_time_s)

    def on_start(self) -> None:
        self.worker_index = getattr(self.environment.runner, "worker_index", 0)
        self.sequence = UserSequence(self.worker_index)

    def _left_s(self, start: Start) -> float:
        return CONFIG.deadline_s - start.elapsed_ms() / 1000

    def submit(self, start: Start) -> tuple[str | None, int, float]:
        """(job id or None, HTTP status, submit latency in ms)."""
        body = {"query": start.query, "top_k": CONFIG.top_k}
        with self.client.post("/chat", json=body, name="POST /chat (submit)", catch_response=True) as resp:
            status = resp.status_code or 0
            latency_ms = start.elapsed_ms()
            job_id = _json(resp).get("job_id") if status == 202 else None
            if job_id:
                resp.success()
            else:
                resp.failure(f"submit answered HTTP {status}")
        return (str(job_id) if job_id else None), status, latency_ms

    def wait_for(self, job_id: str, start: Start) -> Waited:
        polls, status = 0, 0
        while (left := self._left_s(start)) > MIN_WAIT_S:
            if CONFIG.queued_mode == "longpoll":
                params = {"job_id": job_id, "wait": f"{min(left, LONG_POLL_MAX_S):.2f}"}
                name = "GET /job-status (long-poll)"
            else:
                gevent.sleep(min(CONFIG.poll_interval_s, left))
                params, name = {"job_id": job_id}, "GET /job-status (poll)"
            with self.client.get("/job-status", params=params, name=name, catch_response=True) as resp:
                polls += 1
                status = resp.status_code or 0
                body = _json(resp) if status == 200 else {}
                if status == 200:
                    resp.success()
                else:
                    resp.failure(f"job-status answered HTTP {status}")
            job_status = body.get("status")
            if status != 200 or job_status in ("finished", "failed"):
                outcome = "ok" if job_status == "finished" else "error"
                if outcome == "ok":
                    outcome = outcome_of(status, start.elapsed_ms(), CONFIG.deadline_s)
                return Waited(outcome, status, polls, body.get("timings_ms") or {})
        return Waited("timeout", status, polls, {})

    @locust.task
    def chat(self) -> None:
        start = next_start(self.worker_index, self.sequence)
        if start is None:
            raise StopUser()
        job_id, submit_status, submit_ms = self.submit(start)
        submit_outcome = outcome_of(submit_status, submit_ms, CONFIG.deadline_s)
        if job_id is None and submit_outcome == "ok":
            submit_outcome = "error"  # 202 without a job id
        self._write(start, "submit", submit_ms, submit_outcome, submit_status, None)
        if job_id is None:
            waited = Waited(submit_outcome, submit_status, 0, {})
        else:
            waited = self.wait_for(job_id, start)
        latency_ms = start.elapsed_ms()
        sample = self._write(start, "e2e", latency_ms, waited.outcome, waited.status, waited)
        fire_e2e(self.environment, f"chat (queued {CONFIG.queued_mode}, submit → result)", sample)

    def _write(
        self, start: Start, kind: str, latency_ms: float, outcome: str, status: int, waited: Waited | None
    ) -> Sample:
        timings = waited.timings if waited else {}
        sample = Sample(
            t=start.epoch,
            architecture="queued",
            mode=CONFIG.queued_mode,
            kind=kind,
            latency_ms=CONFIG.deadline_s * 1000 if outcome == "timeout" else latency_ms,
            outcome=outcome,
            status=status,
            queue_wait_ms=timings.get("queue_wait"),
            run_ms=timings.get("run"),
            polls=waited.polls if waited else None,
            lag_ms=start.lag_ms,
            request=start.request,
        )
        sample_log().write(sample)
        return sample
