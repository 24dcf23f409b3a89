"""Operator actions on a running pipeline: retry, force-promote, cancel.

Each names its actor and reason; the catalog records them with the workflow id (a forced
promotion is the operator's own transition; a cancellation is the pipeline's retirement
of the version), and Temporal's history records the update or signal.
"""

from temporalio.client import Client

from clients.catalog import CatalogClient
from core.catalog import TransitionRequest, VersionState
from core.pipeline import OperatorRequest, pipeline_workflow_id
from workflows.pipeline import ImagePipeline
from workflows.trigger import Pipeline


def pipeline(client: Client, image: str, serial: str) -> Pipeline:
    return client.get_workflow_handle_for(ImagePipeline.run, pipeline_workflow_id(image, serial))


async def retry(handle: Pipeline, req: OperatorRequest) -> list[str]:
    """Re-run the failed checks; refused unless the pipeline waits for a retry."""
    return await handle.execute_update(ImagePipeline.retry, req)


async def force_promote(
    handle: Pipeline, operator: CatalogClient, image: str, serial: str, req: OperatorRequest
) -> None:
    """Promote past the gate with an operator token, then tell the pipeline to re-read."""
    operator.transition(
        image,
        serial,
        TransitionRequest(
            to=VersionState.active,
            reason=req.says("force-promoted")[:500],
            workflow_id=handle.id,
            force=True,
        ),
    )
    await handle.signal(ImagePipeline.force_promoted, req)


async def cancel(handle: Pipeline, req: OperatorRequest) -> None:
    """Cancel: running tests delete their instances, the version leaves testing."""
    await handle.signal(ImagePipeline.cancelling, req)
    await handle.cancel()
