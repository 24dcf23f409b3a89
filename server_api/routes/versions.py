"""Versions: publish, list, read, move between states, record assessments, collect garbage."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from core.catalog import (
    AbandonRequest,
    AssessmentReport,
    EventView,
    GcRequest,
    GcResult,
    TransitionRequest,
    VersionCreate,
    VersionPackages,
    VersionState,
    VersionView,
)
from core.sbom import CYCLONEDX_MEDIA_TYPE, SPDX_MEDIA_TYPE, SbomFormat
from server_api.catalog import (
    abandon_running,
    get_version,
    publish,
    record_assessment,
    transition,
)
from server_api.deps import (
    ApiReader,
    Operator,
    Publisher,
    ServicesDep,
    SessionDep,
    WriterDep,
)
from server_api.gate import missing_checks
from server_api.gc import collect_garbage
from server_api.manifests import version_packages
from server_api.routing import ReleasingRoute
from server_api.sbom import version_sbom
from server_api.schemas import TokenScope
from server_api.views import events, page_of_versions, view, views

router = APIRouter(prefix="/api/v1", tags=["versions"], route_class=ReleasingRoute)
IMAGE_NAME = r"^[a-z0-9.+-]+:[a-z0-9.+-]+:[a-z0-9.+-]+$"
# A page's position: the image and serial of the last version it showed.
CURSOR = IMAGE_NAME[:-1] + r"/[0-9]{8}[0-9A-Za-z._-]{0,32}$"
PAGE_MAX = 500
ImageName = Annotated[str, Path(pattern=IMAGE_NAME)]
SerialPath = Annotated[str, Path(max_length=40)]
ArchPath = Annotated[str, Path(max_length=16, description="LXD's name (x86_64) or Debian's")]


def _key(cursor: str | None) -> tuple[str, str] | None:
    if cursor is None:
        return None
    image, _, serial = cursor.partition("/")
    return image, serial


@router.get(
    "/versions",
    summary="List versions, optionally by state and image, a page at a time",
    dependencies=[ApiReader],
)
def read_versions(
    request: Request,
    response: Response,
    session: SessionDep,
    state: VersionState | None = None,
    image: Annotated[str | None, Query(pattern=IMAGE_NAME)] = None,
    limit: Annotated[int | None, Query(ge=1, le=PAGE_MAX, description="default: all")] = None,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR, description="from the previous page's Link: rel=next")
    ] = None,
    newest_first: bool = False,
) -> list[VersionView]:
    """By image, then serial. With `limit`, a `Link: <...>; rel="next"` header names the
    next page while versions follow (keyset paging: versions added meanwhile never shift it)."""
    rows, more = page_of_versions(session, state, image, limit, _key(cursor), newest_first)
    if more:
        last = rows[-1]
        url = request.url.include_query_params(cursor=f"{last.image}/{last.serial}")
        response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    return views(session, rows)


@router.post("/versions", status_code=201, summary="Publish a version from uploaded files")
def create_version(
    req: VersionCreate,
    response: Response,
    session: SessionDep,
    services: ServicesDep,
    actor: Publisher,
) -> VersionView:
    """Answers once the version is committed; its deltas follow (each arch's `delta`)."""
    version, created = publish(session, services.store, services.provenance, req, actor)
    if created:
        services.deltas.wake()
    else:
        response.status_code = 200
    return view(session, version)


@router.get("/images/{image}/versions/{serial}", dependencies=[ApiReader])
def read_version(image: ImageName, serial: SerialPath, session: SessionDep) -> VersionView:
    return view(session, get_version(session, image, serial))


@router.get(
    "/images/{image}/versions/{serial}/manifest",
    summary="A version's packages per arch, and what changed since the previous version",
    dependencies=[ApiReader],
)
def read_manifest(
    image: ImageName, serial: SerialPath, session: SessionDep, services: ServicesDep
) -> VersionPackages:
    """`packages` is null for an arch published without a manifest; `diff` is against
    `previous`, the newest older version of the image with a manifest of that arch."""
    return version_packages(session, services.store, get_version(session, image, serial))


@router.get(
    "/images/{image}/versions/{serial}/sbom/{arch}",
    summary="A bill of materials of one arch of a version, from its package manifest",
    dependencies=[ApiReader],
    response_class=Response,
    responses={
        200: {
            "description": "SPDX 2.3 or CycloneDX 1.5 JSON",
            "content": {SPDX_MEDIA_TYPE: {}, CYCLONEDX_MEDIA_TYPE: {}},
        },
        404: {"description": "No such image, version or arch, or that arch has no manifest"},
    },
)
def read_sbom(
    image: ImageName,
    serial: SerialPath,
    arch: ArchPath,
    session: SessionDep,
    services: ServicesDep,
    format: SbomFormat = SbomFormat.spdx,
) -> Response:
    """Every package with its version, Debian architecture and purl
    (`pkg:deb/debian/<name>@<version>?arch=<arch>`); the image (name, serial, arch, LXD
    fingerprint) is the described component. The same version gives the same bytes: those
    its publish stored, which the feeds list (items `sbom.spdx.json`, `sbom.cdx.json`) and
    the build statement names; made from the manifest for a version published before."""
    version = get_version(session, image, serial)
    body = version_sbom(session, services.store, version, arch, format)
    return Response(body, media_type=format.media_type)


@router.post("/images/{image}/versions/{serial}/transitions", summary="Change a version's state")
def move_version(
    image: ImageName,
    serial: SerialPath,
    req: TransitionRequest,
    session: SessionDep,
    services: ServicesDep,
    caller: WriterDep,
) -> VersionView:
    """`force: true` (operators only) promotes past the gate; the event records it."""
    version = get_version(session, image, serial)
    operator = caller.scope == TokenScope.operator
    keep = services.settings.keep_active
    transition(session, services.provenance, version, req, caller.name, keep, operator)
    return view(session, version)


@router.get(
    "/images/{image}/versions/{serial}/events",
    summary="A version's transitions",
    dependencies=[ApiReader],
)
def read_events(image: ImageName, serial: SerialPath, session: SessionDep) -> list[EventView]:
    return events(session, get_version(session, image, serial))


@router.put("/images/{image}/versions/{serial}/assessments", summary="Record one check result")
def put_assessment(
    image: ImageName,
    serial: SerialPath,
    report: AssessmentReport,
    session: SessionDep,
    _: Publisher,
) -> VersionView:
    version = get_version(session, image, serial)
    record_assessment(session, version, report)
    return view(session, version)


@router.get(
    "/images/{image}/versions/{serial}/missing-checks",
    summary="Required checks without a passed or not-applicable result, per arch",
    dependencies=[ApiReader],
)
def read_missing_checks(
    image: ImageName, serial: SerialPath, session: SessionDep
) -> dict[str, list[str]]:
    return missing_checks(session, get_version(session, image, serial))


@router.post(
    "/images/{image}/versions/{serial}/assessments/abandon-running",
    summary="Fail running results whose tester went silent; answers how many",
)
def abandon_running_assessments(
    image: ImageName, serial: SerialPath, req: AbandonRequest, session: SessionDep, _: Publisher
) -> int:
    return abandon_running(session, get_version(session, image, serial), req.older_than_s)


@router.post("/gc", summary="Delete files of versions inactive longer than a grace period")
def garbage_collect(
    req: GcRequest, session: SessionDep, services: ServicesDep, _: Operator
) -> GcResult:
    """Files of versions that left a channel less than `channel_file_grace_s` ago stay."""
    settings = services.settings
    return collect_garbage(
        session,
        services.store,
        req.grace_s,
        settings.channel_file_grace_s,
        upload_idle_s=settings.body_idle_timeout_s,
    )
