"""Image checks: a pipeline that found an image's inputs equal to those of its newest
active version builds nothing, and says so here ("checked at, unchanged since <serial>").
One row per image, the newest check; it is not a state transition, so it has no event."""

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from core.catalog import ImageCheckReport, ImageCheckView, VersionState
from server_api.catalog import CatalogError
from server_api.locks import locked
from server_api.models import ImageCheck, Version, utcnow


def _view(row: ImageCheck) -> ImageCheckView:
    return ImageCheckView.model_validate(row, from_attributes=True)


def record_check(session: Session, image: str, report: ImageCheckReport) -> ImageCheckView:
    """Upsert the image's check. The version it names is held until the commit, so a
    transition that retires it meanwhile comes after the check, never between."""
    serial = report.unchanged_since
    held = locked(session, select(Version).where(Version.image == image, Version.serial == serial))
    if not held:
        raise CatalogError(404, f"no version {serial} of image {image}")
    if held[0].state != VersionState.active:
        raise CatalogError(
            409,
            f"{image} {serial} is {held[0].state}, not active: "
            "an image is unchanged only since an active version",
        )
    values = {"image": image, "checked_at": utcnow(), **report.model_dump()}
    dialect = postgresql if session.connection().dialect.name == "postgresql" else sqlite
    upsert = dialect.insert(ImageCheck).values(values)
    session.execute(
        upsert.on_conflict_do_update(
            index_elements=[col(ImageCheck.image)],
            set_={k: upsert.excluded[k] for k in values if k != "image"},
        )
    )
    session.commit()
    return image_check(session, image)


def image_check(session: Session, image: str) -> ImageCheckView:
    row = session.get(ImageCheck, image, populate_existing=True)
    if row is None:
        raise CatalogError(404, f"image {image} has no check recorded")
    return _view(row)


def image_checks(session: Session) -> dict[str, ImageCheckView]:
    """Every image's check, by image: the catalog's front page shows them."""
    return {r.image: _view(r) for r in session.exec(select(ImageCheck))}
