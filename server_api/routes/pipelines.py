"""CI triggers: start a version's pipeline, or attach to the running one (and retry it
when it waits for a retry). The server talks to Temporal only here, connecting lazily."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from temporalio.client import Client

from clients.temporal import TemporalNotSetUp, TemporalUnavailable, connect
from core.arch import LxdArch
from core.config import Settings
from core.images import ImageDefinitionError, load_image
from core.pipeline import PipelineInput
from core.spec import ImageSpec, Serial
from server_api.deps import Publisher, SettingsDep
from workflows.trigger import Triggered, new_serial, trigger

router = APIRouter(prefix="/api/v1", tags=["pipelines"])


class PipelineRequest(BaseModel):
    # A definition under the server's images directory (`busybox` -> images/busybox.yaml),
    # or a whole image specification.
    image: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")] | ImageSpec
    serial: Serial | None = None  # default: now, YYYYMMDD-HHMMSS (UTC)
    arches: list[LxdArch] | None = None  # default: the definition's


class PipelineStarted(Triggered):
    serial: str
    ui_link: str


async def _temporal(request: Request) -> tuple[Client, Settings]:
    state = request.app.state
    if getattr(state, "temporal", None) is None:
        settings = Settings()
        try:
            state.temporal = (await connect(settings), settings)
        except TemporalUnavailable as exc:
            raise HTTPException(503, str(exc)) from None
    return state.temporal


@router.post("/pipelines", status_code=202, summary="Start or attach to a version's pipeline")
async def start_pipeline(
    req: PipelineRequest, request: Request, server: SettingsDep, actor: Publisher
) -> PipelineStarted:
    if isinstance(req.image, ImageSpec):
        image = req.image
    else:
        path = server.images_dir / f"{req.image}.yaml"
        if not path.is_file():
            raise HTTPException(404, f"no image definition {req.image!r} in {server.images_dir}")
        try:
            image = await run_in_threadpool(load_image, path)
        except ImageDefinitionError as exc:
            raise HTTPException(422, str(exc)) from None
    if req.arches:
        image = image.model_copy(update={"arches": req.arches})
    client, settings = await _temporal(request)
    inp = PipelineInput(spec=image, serial=req.serial or new_serial())
    try:
        _, triggered = await trigger(client, inp, actor)
    except TemporalNotSetUp as exc:
        raise HTTPException(503, str(exc)) from None
    return PipelineStarted(
        **triggered.model_dump(),
        serial=inp.serial,
        ui_link=settings.workflow_ui_link(triggered.workflow_id),
    )
