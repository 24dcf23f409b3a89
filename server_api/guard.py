"""What every request passes before a route sees it (pure ASGI: bodies stream through).

- A request body that sends nothing for `body_idle_timeout_s` is cut off with 408, so a
  stalled client holds a connection for a bounded time, never indefinitely.
- API callers are authenticated before any body is read: a write (POST, PUT, PATCH,
  DELETE under /api/) without a valid token is refused with 401 at once. FastAPI reads
  and parses a body before it solves any dependency, so this cannot be one.
- JSON bodies are read here, up to `max_json_bytes` (413 past it), and NaN/Infinity,
  which Python's json accepts but JSON does not (422); file uploads stream to the route
  and keep their own limit.
"""

import contextlib
import json

import anyio
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.config import ServerSettings
from server_api.models import Token
from server_api.tokens import lookup

# Where the guard leaves the caller's Token (None: no valid one) for `deps.caller`.
TOKEN = "icefloe.token"
UNAUTHORIZED = (
    "a valid publisher token is required: send 'Authorization: Bearer <token>' "
    "(unknown, expired or revoked tokens are refused)"
)
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
UPLOADS = "/api/v1/files/"


class Refused(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        self.response = JSONResponse({"detail": detail}, status, headers)


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


def replay(body: bytes, receive: Receive) -> Receive:
    """`receive` that hands out the body read already, then whatever comes next."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: ServerSettings, engine: Engine) -> None:
        self.app = app
        self.settings = settings
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        receive = idle_limited(receive, self.settings.body_idle_timeout_s)
        headers = Headers(scope=scope)
        try:
            if scope["path"].startswith("/api/"):
                scope[TOKEN] = await self._token(headers.get("authorization", ""))
                if scope[TOKEN] is None and scope["method"] in WRITES:
                    raise Refused(401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
            if _has_body(headers) and not scope["path"].startswith(UPLOADS):
                receive = replay(await self._json_body(headers, receive), receive)
        except Refused as refused:
            await refused.response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _token(self, authorization: str) -> Token | None:
        scheme, _, secret = authorization.partition(" ")
        if scheme.lower() != "bearer" or not secret:
            return None

        def find() -> Token | None:
            with Session(self.engine) as session:
                return lookup(session, secret)

        return await anyio.to_thread.run_sync(find)

    async def _json_body(self, headers: Headers, receive: Receive) -> bytes:
        cap = self.settings.max_json_bytes
        too_big = Refused(413, f"a request body may have at most {cap} bytes")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise too_big
        body = bytearray()
        more = True
        while more:
            try:
                message = await receive()
            except HTTPException as exc:
                raise Refused(exc.status_code, exc.detail) from None
            if message["type"] != "http.request":  # the client went away: nobody to answer
                raise Refused(400, "the client disconnected before its body was complete")
            body += message.get("body", b"")
            if len(body) > cap:
                raise too_big
            more = message.get("more_body", False)
        if b"NaN" in body or b"Infinity" in body:  # rare: only then parse it once more
            _no_constants(bytes(body))
        return bytes(body)


def _refuse_constant(name: str) -> None:
    raise Refused(422, f"{name} is not a JSON number; send a finite number or null")


def _no_constants(body: bytes) -> None:
    """422 for NaN or Infinity outside strings; anything else is the route's to judge."""
    with contextlib.suppress(ValueError):  # not JSON (or not UTF-8): FastAPI says so itself
        json.loads(body, parse_constant=_refuse_constant)


def _has_body(headers: Headers) -> bool:
    return "transfer-encoding" in headers or headers.get("content-length", "0") not in ("", "0")
