"""Garbage collection: the files of long-inactive or revoked versions and of unlisted uploads.

It races publishes and transitions safely: a version loses its files only in a
compare-and-set that a concurrent re-test of it defeats (and that defeats the re-test),
and a file goes only while gc holds its row, which a publish must hold too to list it
(`catalog.publish`): either the publish comes first and gc sees its version, or gc
comes first and the publish finds the file gone and is refused."""

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy import and_, or_, update
from sqlmodel import Session, col, select

from core.catalog import GcResult, VersionState
from server_api.locks import locked
from server_api.models import Blob, Version, VersionArch, listed_files, utcnow
from server_api.store import FileStore


def collect_garbage(
    session: Session,
    store: FileStore,
    grace_s: int,
    channel_file_grace_s: int = 0,
    *,
    upload_idle_s: float,
) -> GcResult:
    """Delete the files of versions inactive or revoked for longer than `grace_s`, and uploads that
    no version lists, keeping every file a surviving version still references. A version
    keeps its files at least `channel_file_grace_s` after it left its channel, which
    serves them that long to hosts whose cached index still lists them. Partial files a
    killed server left go too (`upload_idle_s`: the body idle timeout)."""
    store.clean_incoming(upload_idle_s)
    now = utcnow()
    cutoff = now - timedelta(seconds=grace_s)
    left_before = now - timedelta(seconds=max(grace_s, channel_file_grace_s))
    # First, for good: these versions can never come back (a transition needs their files).
    expired = session.execute(
        update(Version)
        .where(
            or_(
                and_(
                    col(Version.state) == VersionState.inactive,
                    col(Version.state_changed_at) <= left_before,
                ),
                # No channel serves a revoked version's files: no cached-index grace.
                and_(
                    col(Version.state) == VersionState.revoked,
                    col(Version.state_changed_at) <= cutoff,
                ),
            ),
            col(Version.files_deleted_at).is_(None),
        )
        .values(files_deleted_at=now)
        .returning(col(Version.image), col(Version.serial))
        .execution_options(synchronize_session=False)
    ).all()
    session.commit()

    candidates = locked(
        session, select(Blob).where(Blob.created_at <= cutoff).order_by(col(Blob.sha256))
    )
    kept: set[str] = set()
    for listed in session.execute(
        sa.select(*listed_files())
        .join(Version, col(Version.id) == col(VersionArch.version_id))
        .where(col(Version.files_deleted_at).is_(None))
    ):
        kept.update(f for f in listed if f)  # a delta, a manifest, SBOMs go with their version
    blobs = [b for b in candidates if b.sha256 not in kept]
    for blob in blobs:
        session.delete(blob)
    session.flush()
    # Bytes while the rows are still held: no publish can list them meanwhile. Should the
    # commit fail, the rows stay without bytes, which reads as "not uploaded" everywhere.
    for blob in blobs:
        store.delete(blob.sha256)
    session.commit()
    return GcResult(
        versions=sorted(f"{image} {serial}" for image, serial in expired),
        files=sorted(b.sha256 for b in blobs),
        bytes=sum(b.size for b in blobs),
    )
