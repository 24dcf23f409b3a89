"""The catalogue at a glance: the status page (every image by arch, each check a coloured
cell) and SVG badges of an image's newest version, for READMEs and dashboards. As public
as the other pages; a badge of an unknown image is a 404 that says so, as a badge."""

from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from server_api.badges import Rendered
from server_api.deps import PageReader, ServicesDep, SessionDep, briefly
from server_api.grid import Cell
from server_api.routes.pages import render, templates
from server_api.routing import ReleasingRoute
from server_api.status import GREY, Badge, badge, catalogue_status

router = APIRouter(
    include_in_schema=False, default_response_class=HTMLResponse, route_class=ReleasingRoute
)
Name = Annotated[str, Path(max_length=200)]
SVG = "image/svg+xml"


def columns(checks: list[list[str]]) -> list[str]:
    """Every image's checks once, in the order they first appear."""
    return list(dict.fromkeys(c for image in checks for c in image))


@router.get("/status", dependencies=[PageReader])
def status_page(request: Request, session: SessionDep) -> Response:
    images = catalogue_status(session)
    return render(
        request,
        "status.html",
        images=images,
        columns=columns([s.grid.checks for s in images if s.grid]),
        legend=list(Cell),
        base_url=str(request.base_url).rstrip("/"),
    )


def badge_svg(session: Session, image: str, arch: str | None) -> tuple[bytes, int]:
    found = catalogue_status(session, image)
    if not found:
        shown, status_code, title = (
            Badge("icefloe", "no such image", GREY),
            404,
            f"no image {image}",
        )
    elif arch is not None and found[0].grid and arch not in found[0].grid.arches:
        shown, status_code, title = Badge(image, f"no arch {arch}", GREY), 404, ""
    else:
        shown, status_code, title = badge(found[0], arch), 200, ""
    body = templates.get_template("badge.svg").render(
        label=shown.label, message=shown.message, colour=shown.colour, title=title
    )
    return body.encode(), status_code


async def _answer(
    services: ServicesDep, image: str, arch: str | None, if_none_match: str | None
) -> Response:
    """From memory while fresh; else rendered in a worker thread with a session of its own."""
    key = (image, arch)
    kept: Rendered | None = services.badges.fresh(key)
    if kept is None:
        body, status_code = await anyio.to_thread.run_sync(
            briefly, services.engine, lambda s: badge_svg(s, image, arch)
        )
        kept = services.badges.keep(key, body, status_code)
    scope = "public" if services.settings.public_feeds else "private"
    headers = {"ETag": kept.etag, "Cache-Control": f"{scope}, max-age={int(services.badges.ttl_s)}"}
    if if_none_match == kept.etag and kept.status_code == 200:
        return Response(status_code=304, headers=headers)
    return Response(kept.body, status_code=kept.status_code, media_type=SVG, headers=headers)


@router.get("/badges/{image}.svg", dependencies=[PageReader])
async def image_badge(
    image: Name,
    services: ServicesDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    return await _answer(services, image, None, if_none_match)


@router.get("/badges/{image}/{arch}.svg", dependencies=[PageReader])
async def arch_badge(
    image: Name,
    arch: Annotated[str, Path(max_length=40)],
    services: ServicesDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    return await _answer(services, image, arch, if_none_match)
