"""FastAPI dependencies: a DB session per request, the shared store and caches, auth."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from sqlmodel import Session

from server_api.config import ServerSettings
from server_api.feeds import FeedCache
from server_api.store import FileStore
from server_api.tokens import lookup


def get_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine) as session:
        yield session


def get_store(request: Request) -> FileStore:
    return request.app.state.store


def get_feeds(request: Request) -> FeedCache:
    return request.app.state.feeds


def get_settings(request: Request) -> ServerSettings:
    return request.app.state.settings


SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[FileStore, Depends(get_store)]
FeedsDep = Annotated[FeedCache, Depends(get_feeds)]
SettingsDep = Annotated[ServerSettings, Depends(get_settings)]


def publisher(session: SessionDep, authorization: Annotated[str | None, Header()] = None) -> str:
    """The caller's token name, for the audit trail; 401 without a valid token."""
    scheme, _, token = (authorization or "").partition(" ")
    row = lookup(session, token) if scheme.lower() == "bearer" and token else None
    if row is None:
        raise HTTPException(
            401,
            "a valid publisher token is required: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return row.name


Publisher = Annotated[str, Depends(publisher)]
