"""Refreshes on demand: start one now (`POST /api/v1/refreshes`) and read its report, or its
progress while it runs. Unknown image names are outcomes in the report, not errors."""

from typing import Annotated

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from clients.temporal import TemporalNotSetUp, TemporalUnavailable
from core.refresh import RefreshInput
from server_api.deps import ApiReader, Publisher, ServicesDep
from workflows.on_demand import NoSuchRefresh, RefreshStatus, refresh_status, start_refresh

router = APIRouter(prefix="/api/v1", tags=["refreshes"])

# An image (`busybox:1.35:default`) or its definition file's name (`busybox`).
ImageOrFile = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.:+_-]{0,190}$")]
RefreshId = Annotated[str, Field(pattern=r"^icefloe-refresh:[0-9A-Za-z.:_+-]{1,80}$")]


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    images: Annotated[list[ImageOrFile], Field(min_length=1, max_length=200)] | None = None
    force: bool = False  # rebuild even what is unchanged


class RefreshStarted(BaseModel):
    refresh_id: str
    ui_link: str


@router.post("/refreshes", status_code=202, summary="Refresh the catalogue (or some images) now")
async def start(req: RefreshRequest, services: ServicesDep, _: Publisher) -> RefreshStarted:
    inp = RefreshInput(images=req.images, force=req.force)
    try:
        handle = await start_refresh(await services.temporal.client(), inp)
    except (TemporalUnavailable, TemporalNotSetUp) as exc:
        raise HTTPException(503, str(exc)) from None
    return RefreshStarted(refresh_id=handle.id, ui_link=services.temporal.ui_link(handle.id))


@router.get(
    "/refreshes/{refresh_id}",
    summary="A refresh's status and report (its progress while it runs)",
    dependencies=[ApiReader],
)
async def read(refresh_id: RefreshId, services: ServicesDep) -> RefreshStatus:
    try:
        return await refresh_status(await services.temporal.client(), refresh_id)
    except NoSuchRefresh as exc:
        raise HTTPException(404, str(exc)) from None
    except (TemporalUnavailable, TemporalNotSetUp) as exc:
        raise HTTPException(503, str(exc)) from None
