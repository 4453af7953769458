"""A whole-request deadline: past it the client gets 504 with a JSON body instead of waiting on.

Pure ASGI, because the handler must be left behind, not awaited: in `threadpool` mode a cancelled handler
waits for its thread (Starlette does not abandon threads), so the timer runs beside the handler and answers
first. What happens to the work left behind depends on the mode:
- asyncio: it is cancelled, and the upstream call with it.
- threadpool: the thread runs on until the LLM client's own timeout (LLM_TIMEOUT_S), holding a pool slot.
- blocking: the deadline never fires while the call runs, because the event loop itself is stuck in it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from system.rag.http_errors import error_response

logger = logging.getLogger(__name__)


def _retrieve_outcome(task: asyncio.Future[None]) -> None:
    """Read an abandoned handler's outcome, so that asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


class RequestDeadline:
    def __init__(self, app: ASGIApp, timeout_s: float, paths: Collection[str]) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        response_started = False
        abandoned = False

        async def send_unless_abandoned(message: Message) -> None:
            nonlocal response_started
            if abandoned:
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        handler = asyncio.ensure_future(self.app(scope, receive, send_unless_abandoned))
        try:
            done, _ = await asyncio.wait({handler}, timeout=self.timeout_s)
        except asyncio.CancelledError:
            handler.cancel()
            raise
        if done or response_started:
            await handler  # finished (re-raises its error), or too late to answer anything else
            return
        abandoned = True
        handler.cancel()
        handler.add_done_callback(_retrieve_outcome)
        logger.warning(
            "%s %s: no answer after %.1f s, answered 504", scope["method"], scope["path"], self.timeout_s
        )
        response = error_response(504, f"no answer within the request deadline of {self.timeout_s:g} s")
        await response(scope, receive, send)
