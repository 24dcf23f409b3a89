"""Connecting to Temporal with the project's data converter and optional TLS, registering
the search attributes, and asking whether workflows still run."""

from collections.abc import Iterable

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
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


class TemporalNotSetUp(RuntimeError):
    """The namespace lacks Icefloe's search attributes; the message says how to add them."""


_TYPES = {"KEYWORD": "Keyword", "KEYWORD_LIST": "KeywordList"}


def _by_hand(namespace: str, names: list[str]) -> str:
    """The commands that add the attributes where this client may not (Temporal Cloud)."""
    types = {k.name: _TYPES[k.indexed_value_type.name] for k in sa.ALL}
    cloud = " ".join(f"--sa {n}={types[n]}" for n in names)
    own = "; ".join(
        f"temporal operator search-attribute create --namespace {namespace} --name {n} "
        f"--type {types[n]}"
        for n in names
    )
    return f"on Temporal Cloud: tcld namespace search-attributes add -n {namespace} {cloud}; " + (
        f"on a self-hosted cluster: {own}"
    )


async def missing_search_attributes(client: Client) -> list[str]:
    """Icefloe's search attributes the namespace does not know yet."""
    answer = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return [k.name for k in sa.ALL if k.name not in answer.custom_attributes]


async def register(client: Client) -> list[str]:
    """Add the attributes the namespace lacks (a fresh cluster, the time-skipping server): an
    unknown attribute fails the pipeline's start. Returns the names added; idempotent.

    Where the namespace API may not add them (Temporal Cloud), TemporalNotSetUp says how to."""
    try:
        missing = await missing_search_attributes(client)
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=client.namespace,
                    search_attributes={
                        k.name: IndexedValueType.ValueType(k.indexed_value_type)
                        for k in sa.ALL
                        if k.name in missing
                    },
                )
            )
    except RPCError as exc:
        if exc.status == RPCStatusCode.ALREADY_EXISTS:  # another process added them first
            return []
        if exc.status in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED):
            names = [k.name for k in sa.ALL]
            raise TemporalNotSetUp(
                f"this client may not add search attributes to namespace {client.namespace} "
                f"({exc.message}); add them once by hand, {_by_hand(client.namespace, names)}"
            ) from None
        raise
    return missing


def not_set_up(exc: RPCError, namespace: str) -> TemporalNotSetUp | None:
    """The refusal Temporal gives a start that names unknown search attributes, said plainly."""
    if exc.status != RPCStatusCode.INVALID_ARGUMENT or "search attribute" not in exc.message:
        return None
    return TemporalNotSetUp(
        f"namespace {namespace} lacks Icefloe's search attributes ({exc.message}): "
        "run `icefloe setup-temporal` once"
    )


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
