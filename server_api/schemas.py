"""Access models: API tokens and private feed credentials (server-side only)."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field

from core.catalog import Channel, Flavour, Seconds


class TokenScope(StrEnum):
    """reader: people who only look (the catalog pages and read APIs when public feeds are
    off); publisher: CI and workers (publish, test, promote); operator: that plus forced
    actions, garbage collection and access management; metrics: Prometheus scrapers, which
    read /metrics and nothing else (a scraper's token left in its config publishes nothing)."""

    reader = "reader"
    publisher = "publisher"
    operator = "operator"
    metrics = "metrics"


# Who may read the catalog (pages, read APIs, the API document), write to it, scrape it.
CATALOG_READERS = frozenset({TokenScope.reader, TokenScope.publisher, TokenScope.operator})
WRITERS = frozenset({TokenScope.publisher, TokenScope.operator})
SCRAPERS = frozenset({TokenScope.metrics, TokenScope.operator})


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scope: TokenScope = TokenScope.publisher
    expires_in_s: Annotated[Seconds, Field(gt=0)] | None = Field(
        default=None, description="default: never"
    )


class TokenView(BaseModel):
    """A token as listed: never the secret, which only the creation answer carries."""

    id: int
    name: str
    scope: TokenScope
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenIssued(TokenView):
    token: str = Field(description="shown this once; the server keeps only its sha256")


class CredentialCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    channel: Channel = Channel.active
    flavour: Flavour = Flavour.lxd
    expires_in_s: Annotated[Seconds, Field(gt=0)] | None = Field(
        default=None, description="default: never"
    )


class CredentialUpdate(BaseModel):
    channel: Channel


class CredentialView(BaseModel):
    id: int
    name: str
    channel: Channel
    flavour: Flavour
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class CredentialIssued(CredentialView):
    feed_path: str = Field(description="the feed's base path, secret included; shown this once")
