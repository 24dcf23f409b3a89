"""What every request passes before a route sees it (pure ASGI: bodies stream through).

- A request body that sends nothing for `body_idle_timeout_s` is cut off with 408, so a
  stalled client holds a connection for a bounded time, never indefinitely.
"""

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server_api.config import ServerSettings


def idle_limited(receive: Receive, timeout_s: float) -> Receive:
    """`receive`, failing with 408 when the body pauses longer than `timeout_s`. Once the
    body is complete it waits without limit: a download listens for the disconnect."""
    complete = False

    async def guarded() -> Message:
        nonlocal complete
        if complete:
            return await receive()
        with anyio.move_on_after(timeout_s):
            message = await receive()
            complete = message["type"] != "http.request" or not message.get("more_body")
            return message
        raise HTTPException(408, f"the request body sent nothing for {timeout_s:g} s")

    return guarded


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app(scope, idle_limited(receive, self.settings.body_idle_timeout_s), send)
