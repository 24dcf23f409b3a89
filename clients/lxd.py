"""Connecting to an LXD host, and what it can run."""

import pylxd
from pylxd.exceptions import ClientConnectionFailed, LXDAPIException

from core.arch import to_lxd
from core.config import Settings


class LxdUnavailable(RuntimeError):
    """LXD cannot be reached; the message says what to do."""


def connect_lxd(settings: Settings, timeout: float = 600.0) -> pylxd.Client:
    """A client for the configured LXD (local unix socket unless ICEFLOE_LXD_ENDPOINT is set).

    The timeout bounds every call, image downloads included.
    """
    cert = (str(settings.lxd_cert), str(settings.lxd_key)) if settings.lxd_cert else None
    where = settings.lxd_endpoint or "the local unix socket"
    try:
        client = pylxd.Client(
            endpoint=settings.lxd_endpoint,
            cert=cert,
            verify=str(settings.lxd_server_cert) if settings.lxd_server_cert else True,
            timeout=timeout,
            project=settings.lxd_project,
        )
        client.host_info  # noqa: B018 - forces the first request
    except (ClientConnectionFailed, LXDAPIException, OSError) as exc:
        raise LxdUnavailable(
            f"LXD is not reachable at {where} ({exc}); run deploy/setup-host "
            "or set ICEFLOE_LXD_ENDPOINT"
        ) from None
    return client


def host_arches(client: pylxd.Client) -> list[str]:
    """The arches this LXD host runs containers of (LXD names)."""
    return list(client.host_info["environment"]["architectures"])


def host_name(client: pylxd.Client) -> str:
    return client.host_info["environment"]["server_name"]


class ArchNotSupported(ValueError):
    """A worker asked to serve an arch its LXD host cannot run."""


def checked_arch(arch: str, client: pylxd.Client) -> str:
    """The LXD name of `arch`, if this LXD host can run it; else a clear refusal."""
    name = to_lxd(arch)
    supported = host_arches(client)
    if name not in supported:
        raise ArchNotSupported(
            f"this LXD host runs {', '.join(supported)}, not {name}: "
            "start the worker for that arch on a host of that arch"
        )
    return name
