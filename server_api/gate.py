"""The promotion gate: which required checks a version still lacks, and which of those an
active known failure lets through. A check passes the gate when its result is passed or
not applicable; a known failure waives a failed result only, never a check not yet run,
and only until its date: after it the check is required again with nobody acting."""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from core.catalog import SATISFIED, AssessmentState, GateView, KnownFailureView, VersionState
from server_api.models import Assessment, Event, KnownFailure, Version, VersionArch, utcnow


def revoked_at(session: Session, version: Version) -> datetime | None:
    """When the version was last revoked: results from before then no longer count."""
    return session.exec(
        select(func.max(Event.at)).where(
            Event.version_id == version.id, Event.to_state == VersionState.revoked
        )
    ).one()


def missing_checks(session: Session, version: Version) -> dict[str, list[str]]:
    """Per arch, the required checks that have no passed or not-applicable result yet (since
    the version's revocation, if it was revoked): what the gate needs and a re-run tests
    again."""
    arches = session.exec(select(VersionArch.arch).where(VersionArch.version_id == version.id))
    query = select(Assessment).where(
        Assessment.version_id == version.id, col(Assessment.state).in_(SATISFIED)
    )
    if (since := revoked_at(session, version)) is not None:
        query = query.where(Assessment.updated_at > since)
    done = {(a.arch, a.check) for a in session.exec(query)}
    return {arch: [c for c in version.required_checks if (arch, c) not in done] for arch in arches}


def known_failure_view(row: KnownFailure, now: datetime) -> KnownFailureView:
    return KnownFailureView(
        id=row.id or 0,
        image=row.image,
        check=row.check,
        arch=row.arch or None,
        reason=row.reason,
        link=row.link,
        until=row.until,
        actor=row.actor,
        created_at=row.created_at,
        expired=row.until <= now,
    )


def active_known_failures(session: Session, image: str, now: datetime) -> Sequence[KnownFailure]:
    return session.exec(
        select(KnownFailure)
        .where(KnownFailure.image == image, col(KnownFailure.until) > now)
        .order_by(col(KnownFailure.check), col(KnownFailure.arch))
    ).all()


def gate(session: Session, version: Version) -> GateView:
    """What still keeps the version from `active`, per arch, and the known failures that
    let the rest through."""
    now = utcnow()
    missing = missing_checks(session, version)
    failed = {
        (a.arch, a.check)
        for a in session.exec(
            select(Assessment).where(
                Assessment.version_id == version.id, Assessment.state == AssessmentState.failed
            )
        )
    }
    known = active_known_failures(session, version.image, now)
    relied: dict[int, KnownFailure] = {}
    unmet: dict[str, list[str]] = {}
    for arch, checks in missing.items():
        unmet[arch] = []
        for check in checks:
            cover = next((k for k in known if k.check == check and k.arch in ("", arch)), None)
            if cover is None or (arch, check) not in failed:
                unmet[arch].append(check)
            else:
                relied[cover.id or 0] = cover
    return GateView(unmet=unmet, relied_on=[known_failure_view(k, now) for k in relied.values()])
