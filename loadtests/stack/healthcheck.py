"""Container healthchecks for compose.yaml: `python -m loadtests.stack.healthcheck CHECK TARGET`.

The image has no curl or wget, and a check should test what the service is for:
- `http URL`: the URL answers 2xx (an API's /readyz, the mock's /v1/models, a web UI);
- `rq-worker`: an RQ worker of this container (same hostname) is registered on the queue (REDIS_URL,
  QUEUE_NAME), i.e. it has loaded its pipeline and is taking jobs;
- `tcp HOST:PORT`: a TCP connection opens (a Locust worker can reach its master).
Exit code 0 = healthy, 1 = not, with one line saying why. Imports nothing heavy: it runs every few seconds.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from loadtests.stack.services import http_ok

TIMEOUT_S = 3.0  # below compose's healthcheck timeout, so a slow answer is reported here, not killed


def check_http(url: str) -> str | None:
    return None if http_ok(url, timeout=TIMEOUT_S) else f"{url} did not answer 2xx"


def check_tcp(address: str) -> str | None:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=TIMEOUT_S).close()
    except (OSError, ValueError) as exc:
        return f"cannot connect to {address}: {exc}"
    return None


def check_rq_worker(_: str = "") -> str | None:
    import redis
    from redis.exceptions import RedisError
    from rq import Queue, Worker

    url = os.environ.get("REDIS_URL", "")
    queue_name = os.environ.get("QUEUE_NAME", "ragload")
    hostname = socket.gethostname()
    try:
        connection = redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S)
        workers = Worker.all(connection=connection, queue=Queue(queue_name, connection=connection))
    except (RedisError, ValueError) as exc:
        return f"cannot list RQ workers at REDIS_URL: {exc}"
    if any(worker.hostname == hostname for worker in workers):
        return None
    return f"no RQ worker of host {hostname} registered on queue {queue_name}"


def check_saq_worker(_: str = "") -> str | None:
    import redis
    from redis.exceptions import RedisError

    from system.engines.saq.state import registered_workers

    url = os.environ.get("REDIS_URL", "")
    queue_name = os.environ.get("QUEUE_NAME", "ragload")
    hostname = socket.gethostname()
    try:
        connection = redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S)
        workers = registered_workers(connection, queue_name)
    except (RedisError, ValueError) as exc:
        return f"cannot list SAQ workers at REDIS_URL: {exc}"
    if any(worker.hostname == hostname for worker in workers):
        return None
    return f"no SAQ worker of host {hostname} registered on queue {queue_name}"


CHECKS = {"http": check_http, "tcp": check_tcp, "rq-worker": check_rq_worker, "saq-worker": check_saq_worker}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.stack.healthcheck", description=__doc__)
    parser.add_argument("check", choices=sorted(CHECKS))
    parser.add_argument("target", nargs="?", default="", help="URL for http, HOST:PORT for tcp")
    args = parser.parse_args(argv)
    problem = CHECKS[args.check](args.target)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
