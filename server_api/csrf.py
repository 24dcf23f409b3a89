"""Forms are taken only from this server's own pages: a signed double-submit token.

A browser holds a random nonce in a `__Host-` cookie (HttpOnly, Secure, SameSite=Strict:
no other site or subdomain reads or sets it) and every form a page shows it carries
HMAC(key, nonce). A write outside /api/ whose form field does not match its cookie is
refused with 403 before a route sees it, so a form added later is covered without asking.
/api/ needs none: its callers send a bearer header, which a browser never adds on its own,
and the sign-in cookie is not honoured there.

The key is made once in the state directory, so every server process sharing it, and a
restarted one, accepts the forms the others showed.
"""

import contextlib
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server_api.guard import WRITES, replay

COOKIE = "__Host-icefloe_form"
FIELD = "form_token"
FORM_TYPE = "application/x-www-form-urlencoded"
NONCE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)


def load_key(path: Path) -> bytes:
    """The key at `path`, made (0600) by whichever process comes first."""
    if not path.exists():
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(32))
        with contextlib.suppress(FileExistsError):  # another process made it first: use that
            os.link(draft, path)
        draft.unlink()
    return path.read_bytes()


class FormTokens:
    def __init__(self, key: bytes) -> None:
        self.key = key

    def sign(self, nonce: str) -> str:
        return hmac.new(self.key, nonce.encode(), hashlib.sha256).hexdigest()

    def valid(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token or not NONCE.match(nonce):
            return False
        return hmac.compare_digest(self.sign(nonce).encode(), token.encode(errors="replace"))

    def for_page(self, request: Request) -> tuple[str, str | None]:
        """The token a page's forms carry, and the nonce to set as the cookie if the
        browser has none yet."""
        nonce = request.cookies.get(COOKIE, "")
        fresh = None if NONCE.match(nonce) else secrets.token_urlsafe(32)
        return self.sign(fresh or nonce), fresh


def keep_nonce(response: Response, nonce: str) -> None:
    response.set_cookie(COOKIE, nonce, path="/", httponly=True, secure=True, samesite="strict")


def form_field(headers: Headers, body: bytes) -> str | None:
    if headers.get("content-type", "").split(";")[0].strip().lower() != FORM_TYPE:
        return None
    return parse_qs(body.decode(errors="replace")).get(FIELD, [None])[0]


async def read_body(receive: Receive) -> bytes:
    """The whole body, which the request guard (outside this) has bounded already."""
    body = bytearray()
    while True:
        message: Message = await receive()
        body += message.get("body", b"")
        if message["type"] != "http.request" or not message.get("more_body"):
            return bytes(body)


class FormGuard:
    """Pure ASGI, inside the request guard: `refuse` renders the 403 page."""

    def __init__(
        self, app: ASGIApp, tokens: FormTokens, refuse: Callable[[Request], Response]
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in WRITES
            or scope["path"].startswith("/api/")
        ):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        request = Request(scope)
        if not self.tokens.valid(request.cookies.get(COOKIE), form_field(request.headers, body)):
            await self.refuse(request)(scope, receive, send)
            return
        await self.app(scope, replay(body, receive), send)
