"""Versions as the API shows them: rows joined into VersionView and EventView."""

from sqlmodel import Session, col, select

from core.catalog import (
    FILE_NAMES,
    ArchView,
    AssessmentView,
    BuiltFile,
    EventView,
    FileType,
    VersionState,
    VersionView,
)
from server_api.models import Assessment, Event, Version, VersionArch


def view(session: Session, version: Version) -> VersionView:
    arches = session.exec(
        select(VersionArch).where(VersionArch.version_id == version.id).order_by(VersionArch.arch)
    ).all()
    assessments = session.exec(
        select(Assessment).where(Assessment.version_id == version.id).order_by(col(Assessment.id))
    ).all()
    return VersionView(
        image=version.image,
        serial=version.serial,
        state=version.state,
        arches=[
            ArchView(
                arch=a.arch,
                fingerprint=a.fingerprint,
                files=[
                    BuiltFile(
                        ftype=FileType.metadata,
                        name=FILE_NAMES[FileType.metadata],
                        sha256=a.metadata_sha256,
                        size=a.metadata_size,
                    ),
                    BuiltFile(
                        ftype=FileType.squashfs,
                        name=FILE_NAMES[FileType.squashfs],
                        sha256=a.rootfs_sha256,
                        size=a.rootfs_size,
                    ),
                ],
            )
            for a in arches
        ],
        assessments=[AssessmentView.model_validate(a, from_attributes=True) for a in assessments],
        created_at=version.created_at,
        state_changed_at=version.state_changed_at,
        workflow_id=session.exec(
            select(Event.workflow_id)
            .where(Event.version_id == version.id, col(Event.workflow_id).is_not(None))
            .order_by(col(Event.id).desc())
        ).first(),
        files_deleted_at=version.files_deleted_at,
    )


def list_versions(
    session: Session, state: VersionState | None, image: str | None
) -> list[VersionView]:
    query = select(Version).order_by(Version.image, Version.serial)
    if state is not None:
        query = query.where(Version.state == state)
    if image is not None:
        query = query.where(Version.image == image)
    return [view(session, v) for v in session.exec(query)]


def events(session: Session, version: Version) -> list[EventView]:
    rows = session.exec(
        select(Event).where(Event.version_id == version.id).order_by(col(Event.id))
    ).all()
    return [EventView.model_validate(e, from_attributes=True) for e in rows]
