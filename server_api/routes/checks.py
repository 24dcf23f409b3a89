"""Image checks: a pipeline found an image unchanged since an active version, built nothing."""

from fastapi import APIRouter

from core.catalog import ImageCheckReport, ImageCheckView
from server_api.checks import image_check, record_check
from server_api.deps import ApiReader, Publisher, SessionDep
from server_api.routes.versions import ImageName
from server_api.routing import ReleasingRoute

router = APIRouter(prefix="/api/v1", tags=["versions"], route_class=ReleasingRoute)


@router.put(
    "/images/{image}/check",
    summary="Record that the image was checked now and found unchanged since a version",
)
def put_check(
    image: ImageName, report: ImageCheckReport, session: SessionDep, _: Publisher
) -> ImageCheckView:
    """404 if the image has no such version, 409 if that version is not active."""
    return record_check(session, image, report)


@router.get(
    "/images/{image}/check",
    summary="The image's newest check that found it unchanged",
    dependencies=[ApiReader],
)
def read_check(image: ImageName, session: SessionDep) -> ImageCheckView:
    return image_check(session, image)
