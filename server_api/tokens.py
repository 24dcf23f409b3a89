"""API tokens and private feed credentials: random, shown once, stored as sha256 only.

Both the API (for operators) and `icefloe token` (on the server host, which is how
the first operator token comes to exist) manage them through these functions.
"""

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import TypeVar

from sqlmodel import Session, col, select

from core.catalog import Channel
from server_api.edge import EdgeFiles
from server_api.models import FeedCredential, Secret, Token, utcnow
from server_api.schemas import (
    CredentialCreate,
    CredentialIssued,
    CredentialView,
    TokenCreate,
    TokenIssued,
    TokenView,
)

Secretive = TypeVar("Secretive", Token, FeedCredential)


class AccessError(Exception):
    """No such token or credential; carries a message that says which."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _expiry(expires_in_s: int | None) -> datetime | None:
    return utcnow() + timedelta(seconds=expires_in_s) if expires_in_s else None


def _save(session: Session, row: Secret) -> None:
    session.add(row)
    session.commit()
    session.refresh(row)


def _usable(row: Secret | None) -> bool:
    if row is None or row.revoked_at is not None:
        return False
    return row.expires_at is None or row.expires_at > utcnow()


def feed_path(secret: str) -> str:
    return f"/feeds/{secret}"


def create_token(session: Session, name: str, scope: str, expires_in_s: int | None = None) -> str:
    return issue_token(
        session, TokenCreate(name=name, scope=scope, expires_in_s=expires_in_s)
    ).token


def issue_token(session: Session, req: TokenCreate) -> TokenIssued:
    token = f"ifl_{req.scope.value[:3]}_{secrets.token_urlsafe(32)}"
    row = Token(
        name=req.name,
        scope=req.scope,
        token_sha256=_digest(token),
        expires_at=_expiry(req.expires_in_s),
    )
    _save(session, row)
    return TokenIssued(token=token, **TokenView.model_validate(row, from_attributes=True).__dict__)


def lookup(session: Session, token: str) -> Token | None:
    """The token's row if it is known, not revoked and not expired."""
    row = session.exec(select(Token).where(Token.token_sha256 == _digest(token))).first()
    return row if _usable(row) else None


def list_tokens(session: Session) -> list[TokenView]:
    rows = session.exec(select(Token).order_by(col(Token.id))).all()
    return [TokenView.model_validate(r, from_attributes=True) for r in rows]


def issue_credential(
    session: Session, req: CredentialCreate, edge: EdgeFiles | None = None
) -> CredentialIssued:
    """`edge`: where nginx looks credentials up (without it nginx asks the server)."""
    secret = f"iflf_{secrets.token_urlsafe(32)}"
    row = FeedCredential(
        name=req.name,
        channel=req.channel,
        flavour=req.flavour,
        secret_sha256=_digest(secret),
        expires_at=_expiry(req.expires_in_s),
    )
    _save(session, row)
    if edge is not None:
        edge.sync(session, row)
    view = CredentialView.model_validate(row, from_attributes=True)
    return CredentialIssued(feed_path=feed_path(secret), **view.__dict__)


def find_credential(session: Session, secret: str) -> FeedCredential | None:
    """The credential behind a feed URL if it is known, not revoked and not expired."""
    row = session.exec(
        select(FeedCredential).where(FeedCredential.secret_sha256 == _digest(secret))
    ).first()
    return row if _usable(row) else None


def list_credentials(session: Session) -> list[CredentialView]:
    rows = session.exec(select(FeedCredential).order_by(col(FeedCredential.id))).all()
    return [CredentialView.model_validate(r, from_attributes=True) for r in rows]


def _get(session: Session, table: type[Secretive], id_: int) -> Secretive:
    row = session.get(table, id_)
    if row is None:
        kind = "token" if table is Token else "feed credential"
        raise AccessError(f"no {kind} with id {id_}")
    return row


def _revoke(session: Session, table: type[Secretive], id_: int) -> Secretive:
    """Revocation is immediate (every request looks the secret up) and kept for the record."""
    row = _get(session, table, id_)
    row.revoked_at = row.revoked_at or utcnow()
    _save(session, row)
    return row


def revoke_token(session: Session, id_: int) -> TokenView:
    return TokenView.model_validate(_revoke(session, Token, id_), from_attributes=True)


def revoke_credential(session: Session, id_: int, edge: EdgeFiles) -> CredentialView:
    """`edge` loses the credential's file before this returns: nginx refuses it next."""
    row = _revoke(session, FeedCredential, id_)
    edge.sync(session, row)
    return CredentialView.model_validate(row, from_attributes=True)


def follow_channel(session: Session, id_: int, channel: Channel, edge: EdgeFiles) -> CredentialView:
    """Move a consumer to another channel; its feed URL stays the same, and `edge`'s file
    names the new channel's tree before this returns."""
    row = _get(session, FeedCredential, id_)
    row.channel = channel
    _save(session, row)
    edge.sync(session, row)
    return CredentialView.model_validate(row, from_attributes=True)
