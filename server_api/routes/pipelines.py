"""CI triggers: start a version's pipeline, or attach to the running one (and retry it
when it waits for a retry). The server talks to Temporal only here (`services.temporal`)."""

from typing import Annotated

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from clients.temporal import TemporalNotSetUp, TemporalUnavailable
from core.arch import LxdArch
from core.images import ImageDefinitionError, load_image
from core.pipeline import PipelineInput
from core.spec import ImageSpec, Serial
from server_api.deps import Publisher, ServicesDep
from workflows.trigger import Triggered, new_serial, trigger

router = APIRouter(prefix="/api/v1", tags=["pipelines"])


class PipelineRequest(BaseModel):
    # A definition under the server's images directory (`busybox` -> images/busybox.yaml),
    # or a whole image specification.
    image: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")] | ImageSpec
    serial: Serial | None = None  # default: now, YYYYMMDD-HHMMSS (UTC)
    arches: list[LxdArch] | None = None  # default: the definition's
    # Build and publish even if nothing changed since the image's newest active version.
    force: bool = False


class PipelineStarted(Triggered):
    serial: str
    ui_link: str


@router.post("/pipelines", status_code=202, summary="Start or attach to a version's pipeline")
async def start_pipeline(
    req: PipelineRequest, services: ServicesDep, actor: Publisher
) -> PipelineStarted:
    images_dir = services.settings.images_dir
    if isinstance(req.image, ImageSpec):
        image = req.image
    else:
        path = images_dir / f"{req.image}.yaml"
        if not path.is_file():
            raise HTTPException(404, f"no image definition {req.image!r} in {images_dir}")
        try:
            image = await run_in_threadpool(load_image, path)
        except ImageDefinitionError as exc:
            raise HTTPException(422, str(exc)) from None
    if req.arches:
        image = image.model_copy(update={"arches": req.arches})
    inp = PipelineInput(spec=image, serial=req.serial or new_serial(), force=req.force)
    try:
        _, triggered = await trigger(await services.temporal.client(), inp, actor)
    except (TemporalUnavailable, TemporalNotSetUp) as exc:
        raise HTTPException(503, str(exc)) from None
    return PipelineStarted(
        **triggered.model_dump(),
        serial=inp.serial,
        ui_link=services.temporal.ui_link(triggered.workflow_id),
    )
