"""Known failures of checks (operators record them, anyone who reads the catalog sees
them), the gate's view of a version, and each check's pass rate over an image's versions."""

from typing import Annotated

from fastapi import APIRouter, Path, Query

from core.catalog import GateView, ImageChecksView, KnownFailureCreate, KnownFailureView
from server_api.catalog import get_version
from server_api.deps import ApiReader, Operator, SessionDep
from server_api.gate import gate
from server_api.known import add_known_failure, check_rates, known_failures, remove_known_failure
from server_api.routes.versions import IMAGE_NAME, ImageName, SerialPath
from server_api.routing import ReleasingRoute

router = APIRouter(prefix="/api/v1", tags=["checks"], route_class=ReleasingRoute)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
RECENT_MAX = 200


@router.post(
    "/known-failures",
    status_code=201,
    summary="Record a known failure of a check: the gate does not require it until a date",
)
def create_known_failure(
    req: KnownFailureCreate, session: SessionDep, actor: Operator
) -> KnownFailureView:
    """The same image, check and arch again replaces the earlier one. 422 for a date in
    the past or a check the image's newest version does not declare; 404 for no image."""
    return add_known_failure(session, req, actor)


@router.get("/known-failures", summary="Known failures, expired ones too", dependencies=[ApiReader])
def list_known_failures(
    session: SessionDep, image: Annotated[str | None, Query(pattern=IMAGE_NAME)] = None
) -> list[KnownFailureView]:
    return known_failures(session, image)


@router.delete("/known-failures/{failure_id}", summary="Remove a known failure, at once")
def delete_known_failure(failure_id: Id, session: SessionDep, _: Operator) -> KnownFailureView:
    return remove_known_failure(session, failure_id)


@router.get(
    "/images/{image}/versions/{serial}/gate",
    summary="Per arch the required checks the promotion gate still needs, and the known "
    "failures it relies on",
    dependencies=[ApiReader],
)
def read_gate(image: ImageName, serial: SerialPath, session: SessionDep) -> GateView:
    return gate(session, get_version(session, image, serial))


@router.get(
    "/images/{image}/checks",
    summary="Each check's results and pass rate over the image's recent versions",
    dependencies=[ApiReader],
)
def read_check_rates(
    image: ImageName,
    session: SessionDep,
    versions: Annotated[int, Query(ge=1, le=RECENT_MAX, description="how many, newest")] = 20,
) -> ImageChecksView:
    return check_rates(session, image, versions)
