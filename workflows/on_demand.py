"""Starting a refresh now (`icefloe refresh`, `POST /api/v1/refreshes`) and reading where it
is: its report once done, its progress while it runs."""

from datetime import UTC, datetime

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from clients.temporal import not_set_up
from core.arch import CONTROL_TASK_QUEUE
from core.refresh import RefreshInput, RefreshReport
from core.spec import serial_at
from workflows.refresh import Refresh

RefreshHandle = WorkflowHandle[Refresh, RefreshReport]
ID_PREFIX = "icefloe-refresh:"


def refresh_id(now: datetime | None = None) -> str:
    """`icefloe-refresh:20261203-130102.345`: two refreshes asked for in one second differ."""
    now = now or datetime.now(UTC)
    return f"{ID_PREFIX}{serial_at(now)}.{now.microsecond // 1000:03d}"


async def start_refresh(client: Client, inp: RefreshInput) -> RefreshHandle:
    what = ", ".join(inp.images) if inp.images is not None else "the whole catalogue"
    try:
        return await client.start_workflow(
            Refresh.run,
            inp,
            id=refresh_id(),
            task_queue=CONTROL_TASK_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"refresh of {what}" + (" (forced)" if inp.force else ""),
        )
    except RPCError as exc:
        raise not_set_up(exc, client.namespace) or exc from None


class RefreshStatus(BaseModel):
    refresh_id: str
    status: str  # running, completed, failed, terminated, ...
    report: RefreshReport | None = None  # the result, or the progress while it runs


class NoSuchRefresh(LookupError):
    """No refresh workflow has this id."""


async def refresh_status(client: Client, workflow_id: str) -> RefreshStatus:
    if not workflow_id.startswith(ID_PREFIX):
        raise NoSuchRefresh(f"{workflow_id!r} is not a refresh id (they start {ID_PREFIX})")
    handle = client.get_workflow_handle_for(Refresh.run, workflow_id)
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NoSuchRefresh(f"no refresh {workflow_id}") from None
        raise
    status = desc.status or WorkflowExecutionStatus.RUNNING
    report = None
    if status == WorkflowExecutionStatus.COMPLETED:
        report = await handle.result()
    elif status == WorkflowExecutionStatus.RUNNING:
        report = await handle.query(Refresh.progress)
    return RefreshStatus(refresh_id=workflow_id, status=status.name.lower(), report=report)
