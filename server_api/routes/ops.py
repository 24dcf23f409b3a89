"""What operators and their tools read beside the catalog: Prometheus metrics and the API
document. As public as the feeds: with them off, /metrics needs a metrics or operator token
and the document (and /docs, /redoc showing it) a token that reads the catalog."""

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server_api.deps import DocumentReader, PageReader, Scraper, ServicesDep

router = APIRouter(include_in_schema=False)
DOCUMENT = "/openapi.json"


@router.get("/metrics", dependencies=[Scraper])
def prometheus(services: ServicesDep) -> Response:
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(DOCUMENT, dependencies=[DocumentReader])
async def document(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs", dependencies=[PageReader])
async def swagger(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=DOCUMENT, title=f"{request.app.title} - Swagger UI", oauth2_redirect_url=None
    )


@router.get("/redoc", dependencies=[PageReader])
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(openapi_url=DOCUMENT, title=f"{request.app.title} - ReDoc")
