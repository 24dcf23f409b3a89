"""Connecting to Temporal with the project's data converter and optional TLS."""

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig

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
