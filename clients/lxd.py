"""Connecting to an LXD host, and what it can run."""

from typing import Any

import pylxd
from pylxd.client import get_session_for_url
from pylxd.exceptions import ClientConnectionFailed, LXDAPIException

from core.arch import to_lxd
from core.config import Settings


class LxdUnavailable(RuntimeError):
    """LXD cannot be reached; the message says what to do."""


def connect_lxd(settings: Settings, timeout: float = 600.0) -> pylxd.Client:
    """A client for the configured LXD (local unix socket unless ICEFLOE_LXD_ENDPOINT is set).

    The timeout bounds every call, image downloads included. A remote LXD that answers but
    does not trust the client certificate is refused here, not at the first real call.
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
            session=_pinned_session(settings, cert),
        )
        auth = client.host_info["auth"]
    except (ClientConnectionFailed, LXDAPIException, OSError) as exc:
        raise LxdUnavailable(
            f"LXD is not reachable at {where} ({exc}); run deploy/setup-host --role arch "
            "or set ICEFLOE_LXD_ENDPOINT"
        ) from None
    if auth != "trusted":
        raise LxdUnavailable(
            f"the LXD at {where} does not trust the client certificate "
            f"{settings.lxd_cert or '(none: set ICEFLOE_LXD_CERT and ICEFLOE_LXD_KEY)'}; "
            f"on that host run `lxc config trust add {settings.lxd_cert or 'CERT'}`"
        )
    return client


def _pinned_session(settings: Settings, cert: tuple[str, str] | None) -> Any:
    """pylxd's session for a remote LXD whose certificate is pinned, minus the environment:
    requests would put REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE (set on many hosts) in place of
    the pin and refuse the LXD (proxy variables go too: a pinned LXD is reached directly).
    None: pylxd's own session."""
    if not (settings.lxd_endpoint and settings.lxd_server_cert):
        return None
    session = get_session_for_url(
        settings.lxd_endpoint.rstrip("/"), verify=str(settings.lxd_server_cert), cert=cert
    )
    session.trust_env = False
    return session


def host_arches(client: pylxd.Client) -> list[str]:
    """The arches this LXD host runs containers of (LXD names)."""
    return list(client.host_info["environment"]["architectures"])


def host_name(client: pylxd.Client) -> str:
    return client.host_info["environment"]["server_name"]


def server_version(client: pylxd.Client) -> str:
    """`lxd 5.0.2` or `incus 6.0.4`: the daemon a check ran on, as its results record it."""
    env = client.host_info["environment"]
    return f"{env.get('server', 'lxd')} {env.get('server_version', 'unknown')}"


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
