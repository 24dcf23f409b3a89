"""FastAPI dependencies: the server's services, a DB session per request, auth.

Routes reach every service through `ServicesDep` (server_api.services). Dependencies that
do no I/O are `async def`: FastAPI runs sync ones in its thread pool, and those hops
were a fifth of a small feed request's time.

A connection is only ever checked out inside one worker-thread hop, or by a session
whose closing needs no worker thread. Holding one while queued for a thread (a lookup
in one hop, the route in the next) deadlocks once every thread waits on the pool:
lookups use a session of their own, closed in the hop that opened it.
"""

from collections.abc import AsyncIterator, Callable
from typing import Annotated, TypeVar

import anyio
from fastapi import Cookie, Depends, Header, HTTPException, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session

from server_api.guard import TOKEN, UNAUTHORIZED
from server_api.models import Token
from server_api.schemas import CATALOG_READERS, SCRAPERS, WRITERS, TokenScope
from server_api.services import Services, get_services
from server_api.tokens import lookup

T = TypeVar("T")

ServicesDep = Annotated[Services, Depends(get_services)]


async def get_session(services: ServicesDep) -> AsyncIterator[Session]:
    """The route's session: it connects on first use, in the route's thread. Closing it
    gives the connection back on a thread of its own, never waiting for the pool's."""
    session = Session(services.engine)
    try:
        yield session
    finally:
        await anyio.to_thread.run_sync(session.close, limiter=anyio.CapacityLimiter(1))


def briefly(engine: Engine, use: Callable[[Session], T]) -> T:
    """`use` a session that is closed before this returns (call it from a worker thread)."""
    with Session(engine) as session:
        return use(session)


SessionDep = Annotated[Session, Depends(get_session)]


async def caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Token:
    """The caller's token, which the request guard looked up before any body was read;
    401 unless it is known, unexpired and not revoked. (`authorization` is declared here
    so the API document names the header.)"""
    row: Token | None = request.scope.get(TOKEN)
    if row is None:
        raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    return row


CallerDep = Annotated[Token, Depends(caller)]


async def writer(token: CallerDep) -> Token:
    """The caller's token unless it is a reader's or a scraper's: they only look."""
    if token.scope not in WRITERS:
        raise HTTPException(
            403, f"token {token.name!r} is a {token.scope} token; this needs publisher or operator"
        )
    return token


WriterDep = Annotated[Token, Depends(writer)]


async def publisher(token: WriterDep) -> str:
    """The caller's token name, for the audit trail. Operator tokens publish too."""
    return token.name


async def operator(token: CallerDep) -> str:
    if token.scope != TokenScope.operator:
        raise HTTPException(
            403, f"token {token.name!r} is a {token.scope} token; this needs operator"
        )
    return token.name


Publisher = Annotated[str, Depends(publisher)]
Operator = Annotated[str, Depends(operator)]


READ_UNAUTHORIZED = (
    "public feeds are off here, so reading the catalog needs a token: send "
    "'Authorization: Bearer <token>' (a reader token will do)"
)


async def api_reader(
    request: Request,
    services: ServicesDep,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """Read APIs are as public as the feeds: with public feeds off, the catalog's hashes,
    actors and check output are not for everyone either, so a token that reads is needed."""
    if not services.settings.public_feeds:
        may_read(request.scope.get(TOKEN))


def may_read(row: Token | None) -> None:
    """401 without a valid token, 403 for one that only scrapes /metrics."""
    if row is None:
        raise HTTPException(401, READ_UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    if row.scope not in CATALOG_READERS:
        raise HTTPException(
            403, f"token {row.name!r} is a {row.scope} token: it reads /metrics, not the catalog"
        )


# Where a browser keeps its token: set by POST /login, sent only to pages (never to /api/).
TOKEN_COOKIE = "icefloe_token"


class LoginRequired(Exception):
    """A page was asked for without a valid token while public feeds are off."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


async def page_reader(
    request: Request,
    services: ServicesDep,
    authorization: Annotated[str | None, Header()] = None,
    token: Annotated[str | None, Cookie(alias=TOKEN_COOKIE)] = None,
) -> None:
    """Pages follow the read APIs' rule; a browser's token comes in the login cookie."""
    if services.settings.public_feeds:
        return
    row = await find_token(services, bearer(authorization) or token or "")
    if row is None or row.scope not in CATALOG_READERS:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)


async def document_reader(
    services: ServicesDep,
    authorization: Annotated[str | None, Header()] = None,
    token: Annotated[str | None, Cookie(alias=TOKEN_COOKIE)] = None,
) -> None:
    """/openapi.json describes the read APIs, so it is as public as they are; the cookie
    counts too, as /docs (a page) fetches it from the browser."""
    if not services.settings.public_feeds:
        may_read(await find_token(services, bearer(authorization) or token or ""))


SCRAPE_UNAUTHORIZED = (
    "public feeds are off here, so /metrics needs a token: send 'Authorization: Bearer "
    "<token>' with a metrics token (`icefloe token create --scope metrics`) or an operator's"
)


async def scraper(
    services: ServicesDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    """/metrics is as public as the feeds; with them off, a metrics or operator token in the
    header, as Prometheus sends it (`authorization: credentials_file:`)."""
    if services.settings.public_feeds:
        return
    row = await find_token(services, bearer(authorization))
    if row is None:
        raise HTTPException(401, SCRAPE_UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    if row.scope not in SCRAPERS:
        raise HTTPException(
            403, f"token {row.name!r} is a {row.scope} token; /metrics needs metrics or operator"
        )


def bearer(authorization: str | None) -> str:
    """The secret of an `Authorization: Bearer <secret>` header, else ''."""
    scheme, _, secret = (authorization or "").partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else ""


async def find_token(services: Services, secret: str) -> Token | None:
    """The usable token `secret` names, looked up in a session of its own."""
    if not secret:
        return None
    return await anyio.to_thread.run_sync(
        briefly, services.engine, lambda session: lookup(session, secret)
    )


ApiReader = Depends(api_reader)
PageReader = Depends(page_reader)
DocumentReader = Depends(document_reader)
Scraper = Depends(scraper)
