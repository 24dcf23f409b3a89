"""Connecting to Temporal with the project's data converter and optional TLS, registering
the search attributes, and asking whether workflows still run."""

from collections.abc import Iterable

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from core import search_attributes as sa
from core.config import Settings


class TemporalUnavailable(RuntimeError):
    """Temporal cannot be reached; the message says what to do."""


def _tls(settings: Settings) -> TLSConfig | bool:
    if not settings.temporal_tls:
        return False
    read = lambda p: p.read_bytes() if p else None  # noqa: E731
    return TLSConfig(
        server_root_ca_cert=read(settings.temporal_tls_ca),
        client_cert=read(settings.temporal_tls_cert),
        client_private_key=read(settings.temporal_tls_key),
    )


async def connect(settings: Settings) -> Client:
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            tls=_tls(settings),
            data_converter=pydantic_data_converter,
        )
    except RuntimeError as exc:
        raise TemporalUnavailable(
            f"Temporal is not reachable at {settings.temporal_address} ({exc}); "
            "start the stack with deploy/run-local or set ICEFLOE_TEMPORAL_ADDRESS"
        ) from None


async def register(client: Client) -> None:
    """Add the attributes to a server started without them (a cluster, the time-skipping
    server): an unknown attribute fails the pipeline's workflow task and it hangs."""
    wanted = {key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in sa.ALL}
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=wanted)
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.ALREADY_EXISTS:
            raise


async def running(client: Client, workflow_ids: Iterable[str]) -> set[str]:
    """Those of the workflows whose latest run is still running (unknown ones are not)."""
    out = set()
    for workflow_id in set(workflow_ids):
        try:
            desc = await client.get_workflow_handle(workflow_id).describe()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            continue
        if desc.status == WorkflowExecutionStatus.RUNNING:
            out.add(workflow_id)
    return out
