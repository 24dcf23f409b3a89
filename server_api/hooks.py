"""Webhook subscriptions: made (the secret shown once), listed, removed; their deliveries
listed, and each attempt's outcome kept."""

import secrets

from sqlmodel import Session, col, select

from clients.receivers import TargetRefused, check_target
from core.notices import (
    AttemptReport,
    DeliveryState,
    DeliveryView,
    HookCreate,
    HookIssued,
    HookView,
    NoticeKind,
)
from server_api.catalog import CatalogError
from server_api.models import Delivery, Hook, Notice, utcnow


def _view(hook: Hook) -> HookView:
    assert hook.id is not None
    return HookView(
        id=hook.id,
        url=hook.url,
        events=[NoticeKind(e) for e in hook.events],
        format=hook.format,
        created_by=hook.created_by,
        created_at=hook.created_at,
    )


def create_hook(session: Session, req: HookCreate, actor: str, allow_local: bool) -> HookIssued:
    """422 naming the bad URL or the unknown event names."""
    known = {k.value for k in NoticeKind}
    unknown = [e for e in req.events if e not in known]
    if unknown:
        raise CatalogError(
            422,
            f"unknown event {', '.join(map(repr, unknown))}; "
            f"events are: {', '.join(sorted(known))}",
        )
    try:
        check_target(req.url, allow_local)
    except TargetRefused as exc:
        raise CatalogError(422, f"url: {exc}") from None
    hook = Hook(
        url=req.url,
        events=sorted(set(req.events)),
        format=req.format,
        secret=secrets.token_urlsafe(32),
        created_by=actor,
    )
    session.add(hook)
    session.commit()
    session.refresh(hook)
    return HookIssued(**_view(hook).model_dump(), secret=hook.secret)


def list_hooks(session: Session) -> list[HookView]:
    rows = session.exec(select(Hook).where(col(Hook.removed_at).is_(None)).order_by(col(Hook.id)))
    return [_view(h) for h in rows]


def get_hook(session: Session, hook_id: int) -> Hook:
    hook = session.get(Hook, hook_id)
    if hook is None or hook.removed_at is not None:
        raise CatalogError(404, f"no hook {hook_id}")
    return hook


def remove_hook(session: Session, hook_id: int) -> HookView:
    """Nothing new goes to it; its deliveries still retrying give up at their next attempt."""
    hook = get_hook(session, hook_id)
    hook.removed_at = utcnow()
    session.add(hook)
    session.commit()
    session.refresh(hook)
    return _view(hook)


def delivery_view(delivery: Delivery, notice: Notice) -> DeliveryView:
    assert delivery.id is not None
    return DeliveryView(
        id=delivery.id,
        hook_id=delivery.hook_id,
        event_id=notice.event_id,
        kind=NoticeKind(notice.kind),
        image=notice.image,
        serial=notice.serial,
        state=delivery.state,
        attempts=delivery.attempts,
        last_status=delivery.last_status,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        updated_at=delivery.updated_at,
    )


def deliveries(session: Session, hook_id: int, limit: int) -> list[DeliveryView]:
    """A hook's deliveries, newest first."""
    rows = session.exec(
        select(Delivery, Notice)
        .join(Notice, col(Notice.id) == col(Delivery.notice_id))
        .where(Delivery.hook_id == hook_id)
        .order_by(col(Delivery.id).desc())
        .limit(limit)
    ).all()
    return [delivery_view(d, n) for d, n in rows]


def record_attempt(session: Session, delivery_id: int, report: AttemptReport) -> DeliveryView:
    """Keep an attempt's outcome; a delivered one is final (a late failure report of an
    earlier attempt does not undo it). 404: no such delivery; 410: its hook was removed
    (the workflow stops trying)."""
    row = session.exec(
        select(Delivery, Notice, Hook)
        .join(Notice, col(Notice.id) == col(Delivery.notice_id))
        .join(Hook, col(Hook.id) == col(Delivery.hook_id))
        .where(Delivery.id == delivery_id)
    ).first()
    if row is None:
        raise CatalogError(404, f"no delivery {delivery_id}")
    delivery, notice, hook = row
    gone = hook.removed_at is not None and report.state != DeliveryState.delivered
    if gone:
        report = AttemptReport(
            state=DeliveryState.failed, attempt=report.attempt, error="its hook was removed"
        )
    if delivery.state != DeliveryState.delivered:
        delivery.state = report.state
        delivery.attempts = max(delivery.attempts, report.attempt or 0)
        delivery.last_status = report.status
        delivery.last_error = report.error
        delivery.updated_at = utcnow()
        session.add(delivery)
        session.commit()
    if gone:
        raise CatalogError(410, f"hook {hook.id} was removed")
    return delivery_view(delivery, notice)
