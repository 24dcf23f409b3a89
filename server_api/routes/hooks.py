"""Webhooks: operators subscribe URLs to events and read each hook's deliveries; workflows
report their events (publisher scope, once per idempotency key); the delivery workflows
report each attempt."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from core.notices import (
    WORKFLOW_KINDS,
    AttemptReport,
    DeliveryView,
    HookCreate,
    HookIssued,
    HookView,
    NoticeCreate,
    NoticeView,
)
from server_api import hooks, notices
from server_api.deps import Operator, Publisher, ServicesDep, SessionDep
from server_api.routes.access import Id
from server_api.routing import ReleasingRoute

router = APIRouter(prefix="/api/v1", tags=["hooks"], route_class=ReleasingRoute)


@router.post("/hooks", status_code=201, summary="Subscribe a URL to events (secret shown once)")
def create_hook(
    req: HookCreate, session: SessionDep, actor: Operator, services: ServicesDep
) -> HookIssued:
    """422 names a bad URL (not http(s), or loopback/link-local unless allowed) or event."""
    allow_local = services.dispatcher.settings.hooks_allow_local_targets
    return hooks.create_hook(session, req, actor, allow_local)


@router.get("/hooks", summary="List webhooks (never their secrets)")
def list_hooks(session: SessionDep, _: Operator) -> list[HookView]:
    return hooks.list_hooks(session)


@router.delete("/hooks/{hook_id}", summary="Remove a webhook: nothing more is sent to it")
def remove_hook(hook_id: Id, session: SessionDep, _: Operator) -> HookView:
    return hooks.remove_hook(session, hook_id)


@router.get("/hooks/{hook_id}/deliveries", summary="A webhook's deliveries, newest first")
def list_deliveries(
    hook_id: Id,
    session: SessionDep,
    _: Operator,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[DeliveryView]:
    hooks.get_hook(session, hook_id)
    return hooks.deliveries(session, hook_id, limit)


@router.post("/notices", summary="Record a workflow's event for the hooks (once per key)")
def record_notice(req: NoticeCreate, session: SessionDep, _: Publisher) -> NoticeView:
    if req.kind not in WORKFLOW_KINDS:
        raise HTTPException(
            422, f"{req.kind} is recorded by the server itself with the change it tells of"
        )
    return notices.report_notice(session, req)


@router.post("/deliveries/{delivery_id}/attempts", summary="Report a delivery attempt")
def report_attempt(
    delivery_id: Id, report: AttemptReport, session: SessionDep, _: Publisher
) -> DeliveryView:
    """404 for an unknown delivery, 410 once its hook is removed (the workflow stops)."""
    return hooks.record_attempt(session, delivery_id, report)
