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
from temporalio.envconfig import ClientConfigProfile, ClientConnectConfig
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from core import search_attributes as sa
from core.config import Settings


class TemporalUnavailable(RuntimeError):
    """Temporal cannot be reached; the message says what to do."""


def _tls(settings: Settings) -> TLSConfig | bool:
    files = (settings.temporal_tls_ca, settings.temporal_tls_cert, settings.temporal_tls_key)
    if not (settings.temporal_tls or any(files) or settings.temporal_tls_server_name):
        return bool(settings.temporal_api_key)  # an API key travels over TLS only
    read = lambda p: p.read_bytes() if p else None  # noqa: E731
    return TLSConfig(
        server_root_ca_cert=read(settings.temporal_tls_ca),
        domain=settings.temporal_tls_server_name,
        client_cert=read(settings.temporal_tls_cert),
        client_private_key=read(settings.temporal_tls_key),
    )


def connect_options(settings: Settings) -> ClientConnectConfig:
    """Where and how to connect: the ICEFLOE_TEMPORAL_* settings, then what the SDK's
    environment configuration profile (ICEFLOE_TEMPORAL_PROFILE) sets, if one is named."""
    options = ClientConnectConfig(
        target_host=settings.temporal_address,
        namespace=settings.temporal_namespace,
        tls=_tls(settings),
    )
    if settings.temporal_api_key:
        options["api_key"] = settings.temporal_api_key.get_secret_value()
    if settings.temporal_profile:
        try:
            profile = ClientConfigProfile.load(settings.temporal_profile)
        except RuntimeError as exc:
            raise TemporalUnavailable(
                f"Temporal profile {settings.temporal_profile!r}: {exc} "
                "(TEMPORAL_CONFIG_FILE, else ~/.config/temporalio/temporal.toml)"
            ) from None
        options.update(profile.to_client_connect_config())
    return options


class MetricsUnavailable(RuntimeError):
    """The metrics address cannot be served; the message says what to change."""


def metrics_runtime(address: str) -> Runtime:
    """A Temporal runtime serving its own metrics for Prometheus at `address` (host:port)."""
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))
    except ValueError as exc:
        raise MetricsUnavailable(
            f"cannot serve metrics at {address} ({exc}); set ICEFLOE_METRICS_ADDRESS to a "
            "free host:port, one per worker process"
        ) from None


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """`runtime`: a worker's, with metrics; clients that only call use the default one."""
    options = connect_options(settings)
    try:
        return await Client.connect(
            **options, data_converter=pydantic_data_converter, runtime=runtime
        )
    except RuntimeError as exc:
        check = (
            "check ICEFLOE_TEMPORAL_ADDRESS and the TLS settings (ICEFLOE_TEMPORAL_TLS_CA, "
            "ICEFLOE_TEMPORAL_TLS_CERT and _KEY, ICEFLOE_TEMPORAL_API_KEY)"
            if options.get("tls")
            else "start the stack with deploy/run-local or set ICEFLOE_TEMPORAL_ADDRESS"
        )
        raise TemporalUnavailable(
            f"Temporal is not reachable at {options['target_host']} ({exc}); {check}"
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
        try:
            missing = await missing_search_attributes(client)
        except RPCError as exc:  # the time-skipping server cannot list: add them all
            if exc.status != RPCStatusCode.UNIMPLEMENTED:
                raise
            missing = [k.name for k in sa.ALL]
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


async def running_pipelines(client: Client, images: Iterable[str]) -> dict[str, str]:
    """Per image with a running ImagePipeline, that pipeline's workflow id (Temporal's
    visibility, which lags a start by a moment: a refresh's own children never need it)."""
    names = sorted(set(images))
    if not names:
        return {}
    quoted = ", ".join("'" + n.replace("'", "") + "'" for n in names)
    query = (
        f"WorkflowType = 'ImagePipeline' AND ExecutionStatus = 'Running' "
        f"AND {sa.IMAGE.name} IN ({quoted})"
    )
    out: dict[str, str] = {}
    async for wf in client.list_workflows(query):
        image = wf.typed_search_attributes.get(sa.IMAGE)
        if image:
            out.setdefault(image, wf.id)
    return out
