"""Operators manage API tokens and private feed credentials. Secrets appear only in the
answer that creates them; lists and revocations never carry one."""

from typing import Annotated

from fastapi import APIRouter, Path

from server_api import tokens
from server_api.deps import Operator, ServicesDep, SessionDep
from server_api.routing import ReleasingRoute
from server_api.schemas import (
    CredentialCreate,
    CredentialIssued,
    CredentialUpdate,
    CredentialView,
    TokenCreate,
    TokenIssued,
    TokenView,
)

router = APIRouter(prefix="/api/v1", tags=["access"], route_class=ReleasingRoute)
# Ids are int4 on Postgres: a larger number is a bad request, not a database error.
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("/tokens", status_code=201, summary="Create an API token (shown once)")
def create_token(req: TokenCreate, session: SessionDep, _: Operator) -> TokenIssued:
    return tokens.issue_token(session, req)


@router.get("/tokens", summary="List API tokens (never their secrets)")
def list_tokens(session: SessionDep, _: Operator) -> list[TokenView]:
    return tokens.list_tokens(session)


@router.post("/tokens/{token_id}/revoke", summary="Revoke an API token, at once")
def revoke_token(token_id: Id, session: SessionDep, _: Operator) -> TokenView:
    return tokens.revoke_token(session, token_id)


@router.post("/credentials", status_code=201, summary="Create a private feed (URL shown once)")
def create_credential(
    req: CredentialCreate, session: SessionDep, _: Operator, services: ServicesDep
) -> CredentialIssued:
    return tokens.issue_credential(session, req, services.edge)


@router.get("/credentials", summary="List private feed credentials (never their secrets)")
def list_credentials(session: SessionDep, _: Operator) -> list[CredentialView]:
    return tokens.list_credentials(session)


@router.patch("/credentials/{credential_id}", summary="Move a credential to another channel")
def update_credential(
    credential_id: Id,
    req: CredentialUpdate,
    session: SessionDep,
    _: Operator,
    services: ServicesDep,
) -> CredentialView:
    return tokens.follow_channel(session, credential_id, req.channel, services.edge)


@router.post("/credentials/{credential_id}/revoke", summary="Revoke a private feed, at once")
def revoke_credential(
    credential_id: Id, session: SessionDep, _: Operator, services: ServicesDep
) -> CredentialView:
    return tokens.revoke_credential(session, credential_id, services.edge)
