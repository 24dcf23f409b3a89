"""Garbage collection: the files of long-inactive versions and of unlisted uploads."""

from datetime import timedelta

from sqlmodel import Session, col, select

from core.catalog import GcResult, VersionState
from server_api.models import Blob, Version, VersionArch, utcnow
from server_api.store import FileStore


def collect_garbage(session: Session, store: FileStore, grace_s: int) -> GcResult:
    """Delete the files of versions inactive for longer than `grace_s`, and uploads that
    no version lists, keeping every file a surviving version still references."""
    cutoff = utcnow() - timedelta(seconds=grace_s)
    expired = session.exec(
        select(Version).where(
            Version.state == VersionState.inactive,
            Version.state_changed_at <= cutoff,
            col(Version.files_deleted_at).is_(None),
        )
    ).all()
    gone = {v.id for v in expired}
    kept: set[str] = set()
    for varch, deleted_at in session.exec(
        select(VersionArch, Version.files_deleted_at).join(
            Version, col(Version.id) == col(VersionArch.version_id)
        )
    ):
        if deleted_at is None and varch.version_id not in gone:
            kept.update((varch.metadata_sha256, varch.rootfs_sha256))
    old = session.exec(select(Blob).where(Blob.created_at <= cutoff)).all()
    blobs = [b for b in old if b.sha256 not in kept]
    now = utcnow()
    for version in expired:
        version.files_deleted_at = now
        session.add(version)
    for blob in blobs:
        session.delete(blob)
    session.commit()
    # Rows first, then bytes: a crash in between leaves stray files, never a dangling row.
    for blob in blobs:
        store.delete(blob.sha256)
    return GcResult(
        versions=[f"{v.image} {v.serial}" for v in expired],
        files=sorted(b.sha256 for b in blobs),
        bytes=sum(b.size for b in blobs),
    )
