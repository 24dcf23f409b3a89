"""A real Temporal dev server (in memory) with the project's search attributes, and what a
workflow's history says about failed attempts."""

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from core import search_attributes as sa
from deploy.stack import temporal_binary


async def start_dev_server(db_file: str | None = None) -> WorkflowEnvironment:
    """In memory, or in `db_file` (SQLite) as `deploy/run-local` keeps it."""
    return await WorkflowEnvironment.start_local(
        dev_server_database_filename=db_file,
        dev_server_existing_path=temporal_binary(),
        search_attributes=sa.ALL,
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )


async def failed_attempts(handle: WorkflowHandle) -> list[str]:
    """Every failed activity attempt of a workflow. Retried attempts leave no event of their
    own in the history; the started event of the attempt that ended carries its number and
    the failure before it."""
    bad = []
    async for e in handle.fetch_history_events():
        if e.event_type in (
            EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
            EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
        ):
            bad.append(f"event {e.event_id}: {EventType.Name(e.event_type)}")
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = e.activity_task_started_event_attributes
            if started.attempt != 1:
                bad.append(
                    f"event {e.event_id}: attempt {started.attempt} after "
                    f"{started.last_failure.message!r}"
                )
    return bad
