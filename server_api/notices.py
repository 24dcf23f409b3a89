"""The notices outbox: an event is written in the caller's transaction with one delivery row
per hook that wants it, so a state change and its notice commit together or not at all.
The dispatcher (server_api.dispatch) starts a delivery workflow for each row afterwards.
"""

import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.catalog import VersionState
from core.notices import NoticeCreate, NoticeKind, NoticeView
from server_api.models import Delivery, Hook, Notice

# Set on a session that recorded a notice; the dispatcher wakes when it commits.
RECORDED = "icefloe_notices"


def record_notice(
    session: Session,
    kind: NoticeKind,
    image: str,
    serial: str | None,
    data: dict[str, Any],
    key: str | None = None,
) -> Notice:
    """Add the notice and its deliveries to the caller's transaction (no commit)."""
    notice = Notice(
        event_id=str(uuid.uuid4()), kind=kind.value, image=image, serial=serial, data=data, key=key
    )
    session.add(notice)
    session.flush()
    assert notice.id is not None
    hooks = session.exec(select(Hook).where(col(Hook.removed_at).is_(None))).all()
    for hook in hooks:
        if kind.value in hook.events:
            assert hook.id is not None
            session.add(Delivery(hook_id=hook.id, notice_id=notice.id))
    session.info[RECORDED] = True
    return notice


# How server_api.revoke words the move that puts the version before a revoked one back.
RESTORED = "restored: "


def move_notice(
    to: VersionState, expected: VersionState, reason: str, forced: bool
) -> NoticeKind | None:
    """The event a version's move is, if it is one hooks hear of (retention, a cancelled
    pipeline's retirement are not)."""
    if to == VersionState.testing:
        return NoticeKind.version_testing
    if to == VersionState.active:
        restored = expected == VersionState.inactive and reason.startswith(RESTORED)
        return NoticeKind.version_restored if restored else NoticeKind.version_promoted
    if to == VersionState.inactive and expected == VersionState.testing:
        return NoticeKind.version_expired if reason.startswith("expired") else None
    if to == VersionState.revoked:
        return NoticeKind.version_revoked
    return None


def _view(notice: Notice, created: bool) -> NoticeView:
    return NoticeView(
        event_id=notice.event_id,
        kind=NoticeKind(notice.kind),
        image=notice.image,
        serial=notice.serial,
        at=notice.at,
        created=created,
    )


def report_notice(session: Session, req: NoticeCreate) -> NoticeView:
    """A workflow's event, once per key: a retried activity records nothing twice."""
    by_key = select(Notice).where(Notice.key == req.key)
    if (seen := session.exec(by_key).first()) is not None:
        return _view(seen, created=False)
    try:
        notice = record_notice(session, req.kind, req.image, req.serial, req.data, req.key)
        session.commit()
    except IntegrityError:  # the same report, committed by a concurrent request
        session.rollback()
        return _view(session.exec(by_key).one(), created=False)
    return _view(notice, created=True)
