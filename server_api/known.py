"""Known failures (an operator's word that a check fails for a known reason, until a date)
and each check's pass rate over an image's recent versions: how flaky it is."""

from sqlalchemy import ColumnElement, case, func
from sqlmodel import Session, col, select

from core.catalog import (
    AssessmentState,
    CheckRate,
    ImageChecksView,
    KnownFailureCreate,
    KnownFailureView,
)
from server_api.catalog import CatalogError
from server_api.gate import active_known_failures, known_failure_view
from server_api.models import Assessment, Image, KnownFailure, Version, utcnow


def add_known_failure(session: Session, req: KnownFailureCreate, actor: str) -> KnownFailureView:
    """Record it, or replace the one of the same image, check and arch (a new date or
    reason). 422 for a date already past or a check the image does not declare."""
    now = utcnow()
    if req.until <= now:
        raise CatalogError(
            422, f"until {req.until:%Y-%m-%d %H:%M:%S} UTC is in the past: give a later date"
        )
    if session.get(Image, req.image) is None:
        raise CatalogError(404, f"no image {req.image}")
    newest = session.exec(
        select(Version).where(Version.image == req.image).order_by(col(Version.serial).desc())
    ).first()
    declared = newest.required_checks if newest else []
    if req.check not in declared:
        raise CatalogError(
            422,
            f"{req.image} has no check {req.check}; its newest version's checks are: "
            + (", ".join(declared) or "none"),
        )
    arch = req.arch or ""
    row = session.exec(
        select(KnownFailure).where(
            KnownFailure.image == req.image,
            KnownFailure.check == req.check,
            KnownFailure.arch == arch,
        )
    ).first()
    row = row or KnownFailure(
        image=req.image, check=req.check, arch=arch, until=now, reason="", actor=actor
    )
    row.sqlmodel_update(
        {"reason": req.reason, "link": req.link, "until": req.until, "actor": actor}
        | {"created_at": now}
    )
    session.add(row)
    session.commit()
    session.refresh(row)
    return known_failure_view(row, utcnow())


def known_failures(session: Session, image: str | None = None) -> list[KnownFailureView]:
    """Every known failure, expired ones too (marked), by image, check and arch."""
    query = select(KnownFailure).order_by(
        col(KnownFailure.image), col(KnownFailure.check), col(KnownFailure.arch)
    )
    if image is not None:
        query = query.where(KnownFailure.image == image)
    now = utcnow()
    return [known_failure_view(r, now) for r in session.exec(query)]


def remove_known_failure(session: Session, failure_id: int) -> KnownFailureView:
    row = session.get(KnownFailure, failure_id)
    if row is None:
        raise CatalogError(404, f"no known failure {failure_id}")
    gone = known_failure_view(row, utcnow())
    session.delete(row)
    session.commit()
    return gone


def _count(state: AssessmentState) -> ColumnElement[int]:
    return func.sum(case((col(Assessment.state) == state, 1), else_=0))


def check_rates(session: Session, image: str, versions: int) -> ImageChecksView:
    """Per check, its results over the image's newest `versions` versions, every arch:
    passed and not-applicable results, and every failed one (a retried failure too)."""
    if session.get(Image, image) is None:
        raise CatalogError(404, f"no image {image}")
    recent = session.exec(
        select(Version.id, Version.serial)
        .where(Version.image == image)
        .order_by(col(Version.serial).desc())
        .limit(versions)
    ).all()
    ids = [i for i, _ in recent]
    rows = session.exec(
        select(
            Assessment.check,
            _count(AssessmentState.passed),
            _count(AssessmentState.not_applicable),
            func.sum(Assessment.failures),
        )
        .where(col(Assessment.version_id).in_(ids))
        .group_by(col(Assessment.check))
        .order_by(col(Assessment.check))
    ).all()
    now = utcnow()
    known = [known_failure_view(k, now) for k in active_known_failures(session, image, now)]
    return ImageChecksView(
        image=image,
        versions=[s for _, s in recent],
        checks=[
            CheckRate(
                check=check,
                passed=passed,
                failed=failed,
                not_applicable=na,
                pass_rate=passed / (passed + failed) if passed + failed else None,
                known_failures=[k for k in known if k.check == check],
            )
            for check, passed, na, failed in rows
        ],
    )
