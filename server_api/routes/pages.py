"""The catalog as web pages: images, an image's versions, a version's checks, events and
packages.

Rendered on the server from templates (no build step, no script: readable without
JavaScript), styled by one small stylesheet that works at phone width. The pages are as
public as the read APIs: with public feeds off they need a token, which a browser gives
once to the login form and then sends in an HttpOnly, Secure, SameSite=Strict cookie,
never in a URL. Every form carries the browser's form token (server_api.csrf).
"""

from datetime import datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import select_autoescape

from core.catalog import AssessmentView, Channel, VersionState
from core.sbom import SbomFormat
from server_api.catalog import CatalogError, get_version
from server_api.chart import chart
from server_api.checks import find_check, image_checks
from server_api.csrf import FIELD, keep_nonce
from server_api.deps import (
    TOKEN_COOKIE,
    LoginRequired,
    PageReader,
    ServicesDep,
    SessionDep,
    find_token,
)
from server_api.gate import gate, missing_checks
from server_api.grid import grid
from server_api.known import check_rates
from server_api.manifests import version_packages
from server_api.routes.versions import ArchPath, ImageName, SerialPath
from server_api.routing import ReleasingRoute
from server_api.sbom import version_sbom
from server_api.schemas import CATALOG_READERS
from server_api.services import services_of
from server_api.status import known_failures
from server_api.units import size
from server_api.views import (
    events,
    get_image,
    image_summaries,
    page_of_versions,
    state_history,
    view,
    views,
)

HERE = Path(__file__).resolve().parents[1]
ASSETS_DIR = HERE / "assets"
templates = Jinja2Templates(directory=HERE / "templates")
# Badges are SVG templates: escaped as HTML is, whatever an image name holds.
templates.env.autoescape = select_autoescape(("html", "svg"))
router = APIRouter(
    include_in_schema=False, default_response_class=HTMLResponse, route_class=ReleasingRoute
)

PER_PAGE = 50  # versions on an image's page
RATE_VERSIONS = 20  # the newest versions whose results make the pass rates
NEWEST = 5  # versions of each image on the front page
SERIAL = r"^[0-9]{8}[0-9A-Za-z._-]{0,32}$"


def when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S} UTC" if at else ""


templates.env.filters["size"] = size
templates.env.filters["when"] = when


def channel_of(state: VersionState) -> Channel | None:
    """The public channel whose feed lists a version in this state, if any."""
    return Channel(state.value) if state.value in Channel.__members__ else None


def render(request: Request, name: str, status_code: int = 200, **context: object) -> Response:
    form_token, fresh = services_of(request.app).forms.for_page(request)
    context |= {
        "signed_in": TOKEN_COOKIE in request.cookies,
        "form_field": FIELD,
        "form_token": form_token,
    }
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    if fresh:
        keep_nonce(response, fresh)
    return response


def not_found(request: Request, message: str) -> Response:
    return render(request, "error.html", 404, message=message)


@router.get("/", dependencies=[PageReader])
def images_page(request: Request, session: SessionDep) -> Response:
    return render(
        request,
        "images.html",
        images=image_summaries(session, NEWEST),
        checks=image_checks(session),
    )


@router.get("/images/{image}", dependencies=[PageReader])
def image_page(
    request: Request,
    image: ImageName,
    session: SessionDep,
    before: Annotated[str | None, Query(pattern=SERIAL)] = None,
) -> Response:
    """Newest first, PER_PAGE at a time; `before` is the last serial of the page before."""
    row = get_image(session, image)
    if row is None:
        return not_found(request, f"no image {image}")
    rows, more = page_of_versions(
        session,
        image=image,
        limit=PER_PAGE,
        after=(image, before) if before else None,
        newest_first=True,
    )
    began = state_history(session, rows)
    shown = views(session, rows)
    return render(
        request,
        "image.html",
        image=row,
        check=find_check(session, image),
        rates=check_rates(session, image, RATE_VERSIONS),
        versions=zip(shown, [began[v.pk] for v in rows], strict=True),
        trend=chart(shown),
        channel_of=channel_of,
        before=before,
        older=rows[-1].serial if more else None,
    )


@router.get("/images/{image}/versions/{serial}", dependencies=[PageReader])
def version_page(
    request: Request,
    image: ImageName,
    serial: SerialPath,
    session: SessionDep,
    services: ServicesDep,
) -> Response:
    try:
        row = get_version(session, image, serial)
    except CatalogError as exc:
        return not_found(request, exc.message)
    version = view(session, row)
    by_arch: dict[str, list[AssessmentView]] = {a.arch: [] for a in version.arches}
    for result in version.assessments:
        by_arch.setdefault(result.arch, []).append(result)
    return render(
        request,
        "version.html",
        v=version,
        results=by_arch,
        grid=grid(version, row.required_checks, known_failures(session)),
        missing=missing_checks(session, row),
        gate=gate(session, row),
        events=events(session, row),
        packages=version_packages(session, services.store, row).arches,
        channel=channel_of(version.state),
        public_feeds=services.settings.public_feeds,
        base_url=str(request.base_url).rstrip("/"),
        workflow_link=services.temporal.ui_link,  # as `icefloe trigger` prints them
    )


@router.get("/images/{image}/versions/{serial}/sbom/{arch}", dependencies=[PageReader])
def sbom_download(
    request: Request,
    image: ImageName,
    serial: SerialPath,
    arch: ArchPath,
    session: SessionDep,
    services: ServicesDep,
    format: SbomFormat = SbomFormat.spdx,
) -> Response:
    """The version page's SBOM links: the API's document (`/api/v1/.../sbom/{arch}`) with
    the pages' access, so a browser's login cookie reads it on a server without public feeds."""
    try:
        body = version_sbom(
            session, services.store, get_version(session, image, serial), arch, format
        )
    except CatalogError as exc:
        return not_found(request, exc.message)
    name = f"{image.replace(':', '-')}-{serial}-{arch}.{format.value}.json"
    return Response(
        body,
        media_type=format.media_type,
        headers={"Content-Disposition": f'inline; filename="{name}"'},
    )


def safe_next(target: str | None) -> str:
    """Only a path on this server: a login must never send the browser elsewhere."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", next_path=safe_next(next))


@router.post("/login")
async def login(request: Request, services: ServicesDep) -> Response:
    """The form's token, checked, goes into the cookie; the browser goes back to its page."""
    form = parse_qs((await request.body()).decode(errors="replace"))
    secret = form.get("token", [""])[0].strip()
    target = safe_next(form.get("next", [None])[0])
    row = await find_token(services, secret)
    if row is None or row.scope not in CATALOG_READERS:
        error = (
            "That token is unknown, expired or revoked."
            if row is None
            else "That is a metrics token: it reads /metrics, not the catalog."
        )
        return render(request, "login.html", 401, next_path=target, error=error)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        TOKEN_COOKIE, secret, path="/", httponly=True, secure=True, samesite="strict"
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(TOKEN_COOKIE, path="/", httponly=True, secure=True, samesite="strict")
    return response


async def login_required(request: Request, exc: Exception) -> Response:
    """A page without a valid token while public feeds are off: 401 with the login form."""
    assert isinstance(exc, LoginRequired)
    response = render(request, "login.html", 401, next_path=safe_next(exc.next_path))
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def form_refused(request: Request) -> Response:
    """A form write without this browser's form token (server_api.csrf): nothing was done."""
    return render(request, "refused.html", 403)
