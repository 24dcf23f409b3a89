"""Operator actions on a running pipeline: retry, force-promote, cancel.

Each names its actor and reason; the catalog records them with the workflow id (a forced
promotion is the operator's own transition; a cancellation is the pipeline's retirement
of the version), and Temporal's history records the update or signal.
"""

from temporalio.client import Client, WorkflowHandle

from core.catalog_client import CatalogClient
from core.models import TransitionRequest, VersionState
from core.pipeline import OperatorRequest, pipeline_workflow_id


def pipeline(client: Client, image: str, serial: str) -> WorkflowHandle:
    return client.get_workflow_handle(pipeline_workflow_id(image, serial))


async def retry(handle: WorkflowHandle, req: OperatorRequest) -> list[str]:
    """Re-run the failed checks; refused unless the pipeline waits for a retry."""
    return await handle.execute_update("retry", req, result_type=list[str])


async def force_promote(
    handle: WorkflowHandle, operator: CatalogClient, image: str, serial: str, req: OperatorRequest
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
    await handle.signal("force_promoted", req)


async def cancel(handle: WorkflowHandle, req: OperatorRequest) -> None:
    """Cancel: running tests delete their instances, the version leaves testing."""
    await handle.signal("cancelling", req)
    await handle.cancel()
