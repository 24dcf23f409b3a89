"""FastAPI dependencies: a DB session per request, the shared store and caches, auth.

Dependencies that do no I/O are `async def`: FastAPI runs sync ones in its thread pool,
and those hops were a fifth of a small feed request's time.

A connection is only ever checked out inside one worker-thread hop, or by a session
whose closing needs no worker thread. Holding one while queued for a thread (a lookup
in one hop, the route in the next) deadlocks once every thread waits on the pool:
lookups use a session of their own, closed in the hop that opened it.
"""

from collections.abc import AsyncIterator, Callable
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, Header, HTTPException, Request
from sqlmodel import Session

from server_api.config import ServerSettings
from server_api.feeds import FeedCache
from server_api.guard import TOKEN, UNAUTHORIZED
from server_api.models import Token
from server_api.schemas import TokenScope
from server_api.store import FileStore

T = TypeVar("T")


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The route's session: it connects on first use, in the route's thread. Closing it
    gives the connection back on a thread of its own, never waiting for the pool's."""
    session = Session(request.app.state.engine)
    try:
        yield session
    finally:
        await anyio.to_thread.run_sync(session.close, limiter=anyio.CapacityLimiter(1))


def briefly(request: Request, use: Callable[[Session], T]) -> T:
    """`use` a session that is closed before this returns (call it from a worker thread)."""
    with Session(request.app.state.engine) as session:
        return use(session)


async def get_store(request: Request) -> FileStore:
    return request.app.state.store


async def get_feeds(request: Request) -> FeedCache:
    return request.app.state.feeds


async def get_settings(request: Request) -> ServerSettings:
    return request.app.state.settings


SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[FileStore, Depends(get_store)]
FeedsDep = Annotated[FeedCache, Depends(get_feeds)]
SettingsDep = Annotated[ServerSettings, Depends(get_settings)]


async def caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Token:
    """The caller's token, which the request guard looked up before any body was read;
    401 unless it is known, unexpired and not revoked. (`authorization` is declared here
    so the API document names the header.)"""
    row: Token | None = request.scope.get(TOKEN)
    if row is None:
        raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    return row


CallerDep = Annotated[Token, Depends(caller)]


async def publisher(token: CallerDep) -> str:
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
