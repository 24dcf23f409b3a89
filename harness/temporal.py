"""A real Temporal dev server (in memory) with the project's search attributes."""

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
