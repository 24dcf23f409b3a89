"""Revoke a version (and restore the one before it); hold and release an image."""

from fastapi import APIRouter

from core.catalog import HoldRequest, HoldView, RevokeRequest, RevokeResult
from server_api.catalog import get_version
from server_api.deps import ApiReader, Operator, ServicesDep, SessionDep
from server_api.revoke import hold, read_hold, release, revoke
from server_api.routes.versions import ImageName, SerialPath
from server_api.routing import ReleasingRoute
from server_api.views import view

router = APIRouter(prefix="/api/v1/images/{image}", tags=["revoke"], route_class=ReleasingRoute)


@router.post(
    "/versions/{serial}/revoke",
    summary="Take a version out of every feed at once; restore the one before if need be",
)
def revoke_version(
    image: ImageName,
    serial: SerialPath,
    req: RevokeRequest,
    session: SessionDep,
    services: ServicesDep,
    actor: Operator,
) -> RevokeResult:
    """Answers once every feed and static tree has dropped the version and its files."""
    version = get_version(session, image, serial)
    restored = revoke(
        session, services.store, version, req.reason, actor, services.settings.keep_active
    )
    services.static.write(session, services.feeds)
    return RevokeResult(
        revoked=view(session, version), restored=view(session, restored) if restored else None
    )


@router.get("/hold", summary="The image's hold, if it is held", dependencies=[ApiReader])
def read_image_hold(image: ImageName, session: SessionDep) -> HoldView:
    return read_hold(session, image)


@router.put("/hold", summary="Hold the image: no version of it is promoted until released")
def hold_image(
    image: ImageName, req: HoldRequest, session: SessionDep, actor: Operator
) -> HoldView:
    return hold(session, image, req, actor)


@router.delete("/hold", summary="Release the image's hold; answers the hold released")
def release_image(image: ImageName, session: SessionDep, _: Operator) -> HoldView:
    return release(session, image)
