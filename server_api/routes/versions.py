"""Versions: publish, read, move between states, record assessments."""

from typing import Annotated

from fastapi import APIRouter, Path, Response

from core.models import AssessmentReport, TransitionRequest, VersionCreate, VersionView
from server_api.catalog import (
    get_version,
    missing_checks,
    publish,
    record_assessment,
    transition,
    view,
)
from server_api.deps import Publisher, SessionDep, SettingsDep, StoreDep

router = APIRouter(prefix="/api/v1", tags=["versions"])
ImageName = Annotated[str, Path(pattern=r"^[a-z0-9.+-]+:[a-z0-9.+-]+:[a-z0-9.+-]+$")]
Serial = Annotated[str, Path(max_length=40)]


@router.post("/versions", status_code=201, summary="Publish a version from uploaded files")
def create_version(
    req: VersionCreate, response: Response, session: SessionDep, store: StoreDep, actor: Publisher
) -> VersionView:
    version, created = publish(session, store, req, actor)
    if not created:
        response.status_code = 200
    return view(session, version)


@router.get("/images/{image}/versions/{serial}")
def read_version(image: ImageName, serial: Serial, session: SessionDep) -> VersionView:
    return view(session, get_version(session, image, serial))


@router.post("/images/{image}/versions/{serial}/transitions", summary="Change a version's state")
def move_version(
    image: ImageName,
    serial: Serial,
    req: TransitionRequest,
    session: SessionDep,
    settings: SettingsDep,
    actor: Publisher,
) -> VersionView:
    version = get_version(session, image, serial)
    transition(session, version, req, actor, settings.keep_active)
    return view(session, version)


@router.put("/images/{image}/versions/{serial}/assessments", summary="Record one check result")
def put_assessment(
    image: ImageName, serial: Serial, report: AssessmentReport, session: SessionDep, _: Publisher
) -> VersionView:
    version = get_version(session, image, serial)
    record_assessment(session, version, report)
    return view(session, version)


@router.get(
    "/images/{image}/versions/{serial}/missing-checks",
    summary="Required checks without a passed result, per arch",
)
def read_missing_checks(
    image: ImageName, serial: Serial, session: SessionDep
) -> dict[str, list[str]]:
    return missing_checks(session, get_version(session, image, serial))
