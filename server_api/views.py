"""Versions as the API and the catalog pages show them: rows joined into VersionView and
EventView, a page at a time, in a fixed number of queries however many versions a page has."""

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy import func, or_, tuple_
from sqlmodel import Session, col, select

from core.catalog import (
    FILE_NAMES,
    ArchView,
    AssessmentView,
    BuiltFile,
    DeltaState,
    EventView,
    FileType,
    VersionState,
    VersionView,
)
from core.inputs import VersionInputs
from server_api.models import Assessment, Event, Image, Version, VersionArch

# Versions whose related rows one query fetches: bounded so an unpaged list of every
# version never binds more parameters than SQLite or Postgres take.
CHUNK = 1000


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _arch_view(a: VersionArch) -> ArchView:
    stored = [
        (FileType.metadata, a.metadata_sha256, a.metadata_size),
        (FileType.squashfs, a.rootfs_sha256, a.rootfs_size),
        (FileType.manifest, a.manifest_sha256, a.manifest_size),
    ]
    return ArchView(
        arch=a.arch,
        fingerprint=a.fingerprint,
        files=[
            BuiltFile(ftype=ftype, name=FILE_NAMES[ftype], sha256=sha256, size=size)
            for ftype, sha256, size in stored
            if sha256 is not None and size is not None
        ],
        delta=a.delta_state,
        delta_base=a.delta_base if a.delta_state == DeltaState.made else None,
        delta_detail=a.delta_detail,
    )


def views(session: Session, versions: Sequence[Version]) -> list[VersionView]:
    """VersionViews of `versions`, in their order: three queries per CHUNK versions (arches,
    assessments, workflow ids), not three per version."""
    ids = [v.pk for v in versions]
    arches: dict[int, list[ArchView]] = defaultdict(list)
    assessments: dict[int, list[AssessmentView]] = defaultdict(list)
    workflows: dict[int, str | None] = {}
    for chunk in _chunks(ids):
        for a in session.exec(
            select(VersionArch)
            .where(col(VersionArch.version_id).in_(chunk))
            .order_by(VersionArch.arch)
        ):
            arches[a.version_id].append(_arch_view(a))
        for r in session.exec(
            select(Assessment)
            .where(col(Assessment.version_id).in_(chunk))
            .order_by(col(Assessment.id))
        ):
            assessments[r.version_id].append(AssessmentView.model_validate(r, from_attributes=True))
        # The newest event that named a workflow: the pipeline driving the version.
        newest = (
            select(func.max(Event.id))
            .where(col(Event.version_id).in_(chunk), col(Event.workflow_id).is_not(None))
            .group_by(col(Event.version_id))
        )
        workflows.update(
            session.exec(
                select(Event.version_id, Event.workflow_id).where(col(Event.id).in_(newest))
            ).all()
        )
    return [
        VersionView(
            image=v.image,
            serial=v.serial,
            state=v.state,
            arches=arches[v.pk],
            assessments=assessments[v.pk],
            created_at=v.created_at,
            state_changed_at=v.state_changed_at,
            workflow_id=workflows.get(v.pk),
            files_deleted_at=v.files_deleted_at,
            inputs=VersionInputs.model_validate(v.inputs) if v.inputs else None,
        )
        for v in versions
    ]


def view(session: Session, version: Version) -> VersionView:
    return views(session, [version])[0]


def page_of_versions(
    session: Session,
    state: VersionState | None = None,
    image: str | None = None,
    limit: int | None = None,
    after: tuple[str, str] | None = None,
    newest_first: bool = False,
) -> tuple[list[Version], bool]:
    """Version rows by (image, serial), oldest first unless `newest_first`: those past the
    key `after` (keyset paging: stable while versions are added), at most `limit`, and
    whether more follow."""
    key = (col(Version.image), col(Version.serial))
    query = select(Version)
    if state is not None:
        query = query.where(Version.state == state)
    if image is not None:
        query = query.where(Version.image == image)
    if after is not None:
        query = query.where(tuple_(*key) < after if newest_first else tuple_(*key) > after)
    query = query.order_by(*(k.desc() for k in key) if newest_first else key)
    if limit is not None:
        query = query.limit(limit + 1)
    rows = list(session.exec(query))
    more = limit is not None and len(rows) > limit
    return rows[:limit], more


def events(session: Session, version: Version) -> list[EventView]:
    rows = session.exec(
        select(Event).where(Event.version_id == version.id).order_by(col(Event.id))
    ).all()
    return [EventView.model_validate(e, from_attributes=True) for e in rows]


def state_history(
    session: Session, versions: Iterable[Version]
) -> dict[int, dict[VersionState, datetime]]:
    """When each version last entered each state it has been in, from its events."""
    ids = [v.pk for v in versions]
    began: dict[int, dict[VersionState, datetime]] = defaultdict(dict)
    for chunk in _chunks(ids):
        for version_id, to_state, at in session.exec(
            select(Event.version_id, Event.to_state, Event.at)
            .where(col(Event.version_id).in_(chunk))
            # Not a move to the state it was in (a re-test, a delta's event): nothing began.
            .where(or_(col(Event.from_state).is_(None), col(Event.from_state) != Event.to_state))
            .order_by(col(Event.id))
        ):
            began[version_id][VersionState(to_state)] = at
    return began


class VersionBrief(BaseModel):
    serial: str
    state: VersionState
    state_changed_at: datetime


class ImageSummary(BaseModel):
    """An image on the catalog's front page: how many versions, how many per state, and
    its newest few."""

    name: str
    release_title: str
    aliases: list[str]
    versions: int
    states: dict[VersionState, int]
    newest: list[VersionBrief]
    held_by: str | None = None  # an operator holds its promotions (server_api.revoke)


def image_summaries(session: Session, newest: int) -> list[ImageSummary]:
    """Every image with its `newest` versions: three queries, whatever the catalog holds."""
    counts: dict[str, dict[VersionState, int]] = defaultdict(dict)
    for image, state, n in session.exec(
        select(Version.image, Version.state, func.count()).group_by(
            col(Version.image), col(Version.state)
        )
    ):
        counts[image][VersionState(state)] = n
    rank = (
        func.row_number()
        .over(partition_by=col(Version.image), order_by=col(Version.serial).desc())
        .label("rank")
    )
    recent = sa.select(
        col(Version.image),
        col(Version.serial),
        col(Version.state),
        col(Version.state_changed_at),
        rank,
    ).subquery()
    latest: dict[str, list[VersionBrief]] = defaultdict(list)
    rows = session.execute(
        sa.select(recent.c.image, recent.c.serial, recent.c.state, recent.c.state_changed_at)
        .where(recent.c.rank <= newest)
        .order_by(recent.c.image, recent.c.serial.desc())
    )
    for image, serial, state, changed in rows:
        latest[image].append(VersionBrief(serial=serial, state=state, state_changed_at=changed))
    return [
        ImageSummary(
            name=i.name,
            release_title=i.release_title or i.release,
            aliases=i.aliases,
            versions=sum(counts[i.name].values()),
            states=counts[i.name],
            newest=latest[i.name],
            held_by=i.held_by,
        )
        for i in session.exec(select(Image).order_by(col(Image.name)))
    ]


def get_image(session: Session, name: str) -> Image | None:
    return session.get(Image, name)
