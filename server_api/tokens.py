"""API tokens: random, shown once, stored as sha256 only."""

import hashlib
import secrets

from sqlmodel import Session, select

from server_api.models import Token

SCOPES = ("publisher", "operator")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str, scope: str) -> str:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    token = f"ifl_{scope[:3]}_{secrets.token_urlsafe(32)}"
    session.add(Token(name=name, scope=scope, token_sha256=_digest(token)))
    session.commit()
    return token


def lookup(session: Session, token: str) -> Token | None:
    row = session.exec(select(Token).where(Token.token_sha256 == _digest(token))).first()
    return row if row is not None and row.revoked_at is None else None
