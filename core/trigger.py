"""Starting a pipeline (or attaching to the one already running) and following it."""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from core import search_attributes as sa
from core.arch import CONTROL_TASK_QUEUE
from core.models import ImageSpec
from core.pipeline import PipelineInput, PipelineResult, pipeline_workflow_id


def new_serial(now: datetime | None = None) -> str:
    """A serial LXD orders correctly: YYYYMMDD-HHMMSS (UTC)."""
    return (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")


async def start_pipeline(
    client: Client, image: ImageSpec, serial: str
) -> WorkflowHandle[object, PipelineResult]:
    """Start the version's workflow, or attach to it if it is already running."""
    return await client.start_workflow(
        "ImagePipeline",
        PipelineInput(image=image, serial=serial),
        id=pipeline_workflow_id(image, serial),
        task_queue=CONTROL_TASK_QUEUE,
        result_type=PipelineResult,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        search_attributes=sa.initial(image, serial),
        static_summary=f"{image.name} {serial} on {', '.join(image.arches)}",
    )


async def follow(
    handle: WorkflowHandle[object, PipelineResult],
    show: Callable[[str], None],
    every_s: float = 1.0,
) -> PipelineResult:
    """Wait for the result, showing the phase whenever it changes."""
    result = asyncio.ensure_future(handle.result())
    last = None
    while not result.done():
        try:
            phase = (await handle.query("progress"))["phase"]
        except Exception:
            phase = last
        if phase != last:
            show(f"phase: {phase}")
            last = phase
        await asyncio.wait([result], timeout=every_s)
    return result.result()
