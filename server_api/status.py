"""The catalogue at a glance: each image's newest version as a grid of cells (server_api.grid),
when the image was last refreshed and whether that refresh found it unchanged. The status
page, the badges and the metrics read it; a fixed number of queries, whatever the catalogue
holds."""

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from core.catalog import VersionState, VersionView
from server_api.checks import find_check, image_checks
from server_api.grid import Cell, Grid, KnownFailures, grid, outcome
from server_api.models import Image, KnownFailure, Version, utcnow
from server_api.views import views


def utc(at: datetime) -> datetime:
    """SQLite gives stored times back without their zone; they are UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


@dataclass(frozen=True)
class ImageStatus:
    image: str
    version: VersionView | None  # the newest
    grid: Grid | None
    refreshed_at: datetime | None  # the newest version made, or a later check found nothing new
    unchanged_since: str | None  # that check's serial, if it is later than the newest version

    def outcome(self, arch: str | None = None) -> Cell | None:
        """Every arch's cells as one (or one arch's); None without a version (or that arch)."""
        if self.grid is None or (arch is not None and arch not in self.grid.arches):
            return None
        arches = [arch] if arch else self.grid.arches
        return outcome(s.cell for a in arches for s in self.grid.row(a))


def newest_versions(session: Session, image: str | None = None) -> list[Version]:
    """Each image's newest version (by serial), by image name."""
    newest = select(Version.image, func.max(Version.serial).label("serial")).group_by(
        col(Version.image)
    )
    if image is not None:
        newest = newest.where(Version.image == image)
    latest = newest.subquery()
    query = select(Version).join(
        latest, (col(Version.image) == latest.c.image) & (col(Version.serial) == latest.c.serial)
    )
    return list(session.exec(query.order_by(col(Version.image))))


def known_failures(session: Session) -> KnownFailures:
    """The catalogue's active known failures as the cells see them, for every page, badge
    and metric at once (one query: a known failure of every arch is stored with arch '')."""
    rows = session.exec(select(KnownFailure).where(col(KnownFailure.until) > utcnow())).all()
    excused = {(k.image, k.arch, k.check) for k in rows}

    def known(image: str, arch: str, check: str) -> bool:
        return (image, arch, check) in excused or (image, "", check) in excused

    return known


def catalogue_status(session: Session, image: str | None = None) -> list[ImageStatus]:
    """Every image's status (or only `image`'s: empty if there is no such image)."""
    known = known_failures(session)
    names = select(Image.name).order_by(col(Image.name))
    if image is not None:
        names = names.where(Image.name == image)
    rows = {v.image: v for v in newest_versions(session, image)}
    shown = dict(zip(rows, views(session, list(rows.values())), strict=True))
    if image is None:
        checks = image_checks(session)
    else:  # a badge: one image's check, not every image's
        checks = {image: found} if (found := find_check(session, image)) else {}
    statuses = []
    for name in session.exec(names):
        row, version, check = rows.get(name), shown.get(name), checks.get(name)
        made = utc(row.created_at) if row else None
        checked = utc(check.checked_at) if check else None
        later = checked is not None and (made is None or checked >= made)
        statuses.append(
            ImageStatus(
                image=name,
                version=version,
                grid=grid(version, row.required_checks, known) if row and version else None,
                refreshed_at=checked if later else made,
                unchanged_since=check.unchanged_since if check and later else None,
            )
        )
    return statuses


@dataclass(frozen=True)
class Badge:
    label: str
    message: str
    colour: str


GREEN, RED, YELLOW, ORANGE, GREY = "#1a7f37", "#cf222e", "#9a6700", "#bc4c00", "#57606a"
COLOURS = {
    Cell.passed: GREEN,
    Cell.failed: RED,
    Cell.running: YELLOW,
    Cell.not_run: YELLOW,
    Cell.known_failure: ORANGE,
}


def badge(status: ImageStatus, arch: str | None = None) -> Badge:
    """The newest version's state, and what its checks came to unless every one passed."""
    label = f"{status.image} {arch}" if arch else status.image
    found = status.outcome(arch)
    if status.version is None or found is None:
        return Badge(label, "no version", GREY)
    state = status.version.state
    message = state.value if found == Cell.passed else f"{state.value}, {found.label}"
    quiet = state in (VersionState.created, VersionState.inactive) and found == Cell.passed
    return Badge(label, message, GREY if quiet else COLOURS[found])
