"""Taking a version back, and freezing an image's promotions.

Revoke moves an active (or inactive, still in its channel's file grace) version to
`revoked`: no feed lists it and no channel serves its files, grace or not (feeds,
static). If revoking an active version leaves fewer than `keep_active` active, the
newest earlier version that passed every check, is not revoked and still has its files
is restored to active, in the same transaction. Revokes, promotions and restores of one
image queue on the image's row, so each sees the others' outcome.

A hold stops promotions of the image (catalog.transition answers 409 naming it) until
released; restores still happen, as they put back what was active before.
"""

from sqlmodel import Session, col, select

from core.catalog import HoldRequest, HoldView, VersionState
from server_api.catalog import CatalogError, _move
from server_api.gate import missing_checks
from server_api.locks import locked
from server_api.models import Image, Version, VersionArch, utcnow
from server_api.notices import RESTORED
from server_api.store import FileStore

REVOCABLE = (VersionState.active, VersionState.inactive)


def revoke(
    session: Session, store: FileStore, version: Version, reason: str, actor: str, keep_active: int
) -> Version | None:
    """Revoke `version` (committed); the version restored in its place, if any."""
    locked(session, select(Image).where(Image.name == version.image))
    (current,) = locked(session, select(Version).where(Version.id == version.id))
    name = f"{version.image} {version.serial}"
    if current.state == VersionState.revoked:
        session.rollback()
        raise CatalogError(409, f"{name} is already revoked")
    if current.state not in REVOCABLE:
        session.rollback()
        raise CatalogError(
            409, f"{name} is {current.state}; only an active or inactive version can be revoked"
        )
    was = current.state
    if not _move(session, current, was, VersionState.revoked, actor, reason, None):
        session.rollback()  # moved by a transition that does not queue on the image
        raise CatalogError(409, f"{name} changed state meanwhile; read it and try again")
    # Only an active version leaves a slot to fill: an inactive one restores nothing.
    restored = None
    if was == VersionState.active:
        restored = _restore(session, store, current, actor, keep_active)
    session.commit()
    return restored


def _restore(
    session: Session, store: FileStore, revoked: Version, actor: str, keep_active: int
) -> Version | None:
    active = session.exec(
        select(Version.id).where(
            Version.image == revoked.image, Version.state == VersionState.active
        )
    ).all()
    if len(active) >= keep_active:
        return None
    earlier = session.exec(
        select(Version)
        .where(
            Version.image == revoked.image,
            Version.state == VersionState.inactive,
            col(Version.serial) < revoked.serial,
            col(Version.files_deleted_at).is_(None),
        )
        .order_by(col(Version.serial).desc())
    )
    for candidate in earlier:
        if _restorable(session, store, candidate):
            why = f"{RESTORED}{revoked.serial} was revoked"
            if _move(
                session, candidate, VersionState.inactive, VersionState.active, actor, why, None
            ):
                return candidate
    return None


def _restorable(session: Session, store: FileStore, version: Version) -> bool:
    """Every required check passed (never revoked since) and every file is still stored."""
    if not version.required_checks or any(missing_checks(session, version).values()):
        return False
    arches = session.exec(select(VersionArch).where(VersionArch.version_id == version.id))
    files = [
        sha
        for a in arches
        for sha in (
            a.metadata_sha256,
            a.rootfs_sha256,
            a.manifest_sha256,
            a.sbom_spdx_sha256,
            a.sbom_cdx_sha256,
        )
        if sha is not None
    ]
    return bool(files) and all(store.exists(sha) for sha in files)


def _image(session: Session, name: str) -> Image:
    rows = locked(session, select(Image).where(Image.name == name))
    if not rows:
        raise CatalogError(404, f"no image {name}")
    return rows[0]


def hold_view(image: Image) -> HoldView | None:
    if image.held_at is None:
        return None
    return HoldView(
        image=image.name,
        held_by=image.held_by or "",
        reason=image.hold_reason or "",
        held_at=image.held_at,
    )


def read_hold(session: Session, name: str) -> HoldView:
    image = session.get(Image, name, populate_existing=True)
    if image is None:
        raise CatalogError(404, f"no image {name}")
    if (view := hold_view(image)) is None:
        raise CatalogError(404, f"{name} is not held")
    return view


def hold(session: Session, name: str, req: HoldRequest, actor: str) -> HoldView:
    """Hold the image (a second hold keeps the first one's who and since: 409)."""
    image = _image(session, name)
    if (view := hold_view(image)) is not None:
        session.rollback()
        raise CatalogError(
            409, f"{name} is already held by {view.held_by} ({view.reason})", held_by=view.held_by
        )
    image.held_by, image.hold_reason, image.held_at = actor, req.reason, utcnow()
    session.add(image)
    session.commit()
    return read_hold(session, name)


def release(session: Session, name: str) -> HoldView:
    """Release the image's hold; the hold that was released."""
    image = _image(session, name)
    view = hold_view(image)
    if view is None:
        session.rollback()
        raise CatalogError(409, f"{name} is not held")
    image.held_by = image.hold_reason = image.held_at = None
    session.add(image)
    session.commit()
    return view
